"""Policy repositories (git), the policy version of every commit, signing keys and signed bundles."""

from django.db import models
from django.utils import timezone

from cordum.accounts.models import Organization
from cordum.common import crypto
from cordum.policies.choices import KeyStatus, SyncStatus

__all__ = ["PolicyRepository", "PolicyVersion", "SigningKey", "PolicyBundle"]


class PolicyRepository(models.Model):
    """The git repository holding an organisation's safety.yaml (remote URL or local path); one per organisation."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="policy_repositories")
    name = models.SlugField(max_length=100)
    url = models.CharField(
        max_length=500, help_text="https://…, ssh://…/git@host:… URL, or a local path to a git repository"
    )
    branch = models.CharField(max_length=200, default="main", help_text="The live branch")
    policy_path = models.CharField(max_length=300, default="safety.yaml", help_text="Path of safety.yaml in the repo")
    # Access token (https) or deploy key (ssh private key), Fernet-encrypted.
    credentials_encrypted = models.TextField(blank=True, default="")
    # Kept encrypted (not hashed): verifying an HMAC needs the secret itself.
    webhook_secret_encrypted = models.TextField(blank=True, default="")
    is_enabled = models.BooleanField(default=True, help_text="Polled by Celery beat and accepts webhooks")
    # Where each change's result is posted back (a commit status per head, one comment per pull request):
    # "owner/name" on GitHub; blank: not posted. The token is Fernet-encrypted like the credentials.
    forge_repository = models.CharField(max_length=200, blank=True, default="",
                                        help_text="GitHub owner/name to post results to; blank: not posted")
    forge_api_url = models.CharField(max_length=300, blank=True, default="https://api.github.com",
                                     help_text="GitHub's API (GitHub Enterprise: https://host/api/v3)")
    forge_token_encrypted = models.TextField(blank=True, default="")

    sync_status = models.CharField(max_length=20, choices=SyncStatus.choices, default=SyncStatus.NEW)
    sync_progress = models.PositiveSmallIntegerField(default=0)  # 0-100, polled by the UI
    sync_message = models.CharField(max_length=300, blank=True, default="")
    sync_started_at = models.DateTimeField(null=True, blank=True)
    resync_requested = models.BooleanField(default=False)  # a trigger arrived while a sync was running
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    branch_heads = models.JSONField(default=dict, blank=True)  # {branch: last synced commit sha}

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policy repositories"
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="policy_repo_unique_name_per_org"),
            # Bundles, rollouts and the live version are per organisation: one policy source each.
            models.UniqueConstraint(fields=["organization"], name="one_policy_repository_per_organization"),
        ]

    def __str__(self):
        return self.name

    @property
    def credentials(self) -> str:
        return crypto.decrypt(self.credentials_encrypted).decode() if self.credentials_encrypted else ""

    @credentials.setter
    def credentials(self, value: str) -> None:
        self.credentials_encrypted = crypto.encrypt(value) if value else ""

    @property
    def webhook_secret(self) -> str:
        return crypto.decrypt(self.webhook_secret_encrypted).decode() if self.webhook_secret_encrypted else ""

    @webhook_secret.setter
    def webhook_secret(self, value: str) -> None:
        self.webhook_secret_encrypted = crypto.encrypt(value) if value else ""

    @property
    def forge_token(self) -> str:
        return crypto.decrypt(self.forge_token_encrypted).decode() if self.forge_token_encrypted else ""

    @forge_token.setter
    def forge_token(self, value: str) -> None:
        self.forge_token_encrypted = crypto.encrypt(value) if value else ""

    @property
    def is_busy(self) -> bool:
        return self.sync_status in (SyncStatus.QUEUED, SyncStatus.SYNCING)


class PolicyVersion(models.Model):
    """The policy file as of one commit that touched it, valid or not."""

    repository = models.ForeignKey(PolicyRepository, on_delete=models.CASCADE, related_name="versions")
    commit_sha = models.CharField(max_length=40)
    parent_sha = models.CharField(max_length=40, blank=True, default="")
    author = models.CharField(max_length=200, blank=True, default="")
    author_email = models.CharField(max_length=200, blank=True, default="")
    message = models.TextField(blank=True, default="")
    committed_at = models.DateTimeField()
    branches = models.JSONField(default=list, blank=True)
    tag = models.CharField(max_length=100, blank=True, default="")  # e.g. v1.7.1 (the human version)
    version = models.CharField(max_length=200)  # "v1.7.1@3f2c1ab" or "main@3f2c1ab"
    source_text = models.TextField(blank=True, default="")
    policy = models.JSONField(null=True, blank=True)  # canonical Policy.to_dict() when valid
    content_sha256 = models.CharField(max_length=64, blank=True, default="")
    is_valid = models.BooleanField(default=False)
    errors = models.JSONField(default=list, blank=True)  # [{file, line, col, message}]
    warnings = models.JSONField(default=list, blank=True)
    is_live = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-committed_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["repository", "commit_sha"], name="policy_version_unique_commit"),
            models.UniqueConstraint(
                fields=["repository"], condition=models.Q(is_live=True), name="policy_version_one_live_per_repo"
            ),
        ]
        indexes = [models.Index(fields=["repository", "is_valid", "committed_at"])]

    def __str__(self):
        return self.version

    @property
    def short_sha(self) -> str:
        return self.commit_sha[:7]

    @property
    def first_line(self) -> str:
        return (self.message or "").strip().splitlines()[0] if (self.message or "").strip() else ""


class SigningKey(models.Model):
    """An Ed25519 key that signs an organisation's bundles; several may be active during rotation."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="signing_keys")
    key_id = models.CharField(max_length=40, unique=True)
    alg = models.CharField(max_length=20, default="ed25519")
    public_key = models.CharField(max_length=100)  # base64 raw
    private_key_encrypted = models.TextField()
    status = models.CharField(max_length=20, choices=KeyStatus.choices, default=KeyStatus.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)
    # Signatures by the keys active when this one was created (bundles.key_endorse): sidecars that trust one of
    # them learn this key from GET /api/v1/keys, so a rotation needs no reinstall.
    endorsements = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.key_id

    @property
    def private_key(self) -> str:
        return crypto.decrypt(self.private_key_encrypted).decode()


class PolicyBundle(models.Model):
    """A signed bundle as published to sidecars. `sequence` increases per organisation."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="policy_bundles")
    repository = models.ForeignKey(PolicyRepository, on_delete=models.CASCADE, related_name="bundles")
    version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="bundles")
    sequence = models.PositiveIntegerField()
    rollback = models.BooleanField(default=False)
    manifest = models.JSONField()
    bundle = models.JSONField()
    etag = models.CharField(max_length=120)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-sequence"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "sequence"], name="policy_bundle_unique_sequence"),
        ]

    def __str__(self):
        return f"#{self.sequence} {self.manifest.get('version', '')}"
