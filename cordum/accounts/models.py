"""Organisations, teams, memberships with roles, agents and their tokens, the admin audit log."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from cordum.accounts.choices import AgentKind, AuditAction, Environment, Role
from cordum.accounts.permissions import Perm, role_has

__all__ = ["Organization", "SingleSignOn", "Team", "Membership", "Invitation", "Agent", "AgentToken", "UserToken", "AdminAuditLog"]


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    # Slack-compatible incoming webhook for approval notifications (optional).
    notification_webhook_url = models.URLField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return self.name


class SingleSignOn(models.Model):
    """An organisation's OpenID Connect provider: who may sign in, and which team and role their groups give."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="sso")
    enabled = models.BooleanField(default=True)
    issuer = models.URLField(max_length=300, help_text="The provider's issuer URL (its discovery document is read).")
    client_id = models.CharField(max_length=200)
    client_secret_encrypted = models.TextField(blank=True, default="")  # Fernet; never shown again
    allowed_domains = models.CharField(
        max_length=500, blank=True, help_text="Comma separated email domains allowed to sign in (empty: any).")
    groups_claim = models.CharField(max_length=100, default="groups")
    # [{"group": "payments-devs", "role": "member", "teams": ["payments"]}, ...]: first matching entry gives the
    # role; teams are the union of every matching entry's.
    group_mappings = models.JSONField(default=list, blank=True)
    default_role = models.CharField(
        max_length=20, choices=Role.choices, blank=True, default="",
        help_text="Role for people whose groups match no mapping; empty: they are refused.")
    password_login = models.BooleanField(default=True, help_text="Members may also log in with a password.")

    def __str__(self):
        return f"single sign-on of {self.organization}"

    @property
    def client_secret(self) -> str:
        from cordum.common import crypto

        return crypto.decrypt(self.client_secret_encrypted).decode() if self.client_secret_encrypted else ""

    @property
    def domains(self) -> list[str]:
        return [d.strip().lower().lstrip("@") for d in self.allowed_domains.split(",") if d.strip()]


class Team(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=100)
    slug = models.SlugField()
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="team_unique_slug_per_org"),
        ]

    def __str__(self):
        return self.name


class Membership(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    teams = models.ManyToManyField(Team, blank=True, related_name="memberships")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["user__username"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="membership_unique_user_per_org"),
        ]

    def __str__(self):
        return f"{self.user} ({self.role}) in {self.organization}"

    def has_perm(self, perm: str) -> bool:
        return role_has(self.role, perm)

    def team_scope(self) -> list[int] | None:
        """The teams whose evidence and held calls this member reads; None: every team.

        Admins and auditors read every team's. Reviewers and policy authors read every team's unless an admin
        scoped them to teams. Members read their teams' (and, apart from this, their own agents'): a member
        scoped to no team sees only what their own agents did.
        """
        if self.has_perm(Perm.VIEW_AUDIT):
            return None
        teams = list(self.teams.values_list("pk", flat=True))
        if not teams and self.role != Role.MEMBER:
            return None
        return teams

    @property
    def reads_every_team(self) -> bool:
        return self.team_scope() is None


class Invitation(models.Model):
    """A single-use, expiring link with which a new member sets their password. Only a digest is stored."""

    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="invitations")
    digest = models.CharField(max_length=64, unique=True)
    sent_to = models.EmailField()
    sent_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"invitation of {self.membership.user} to {self.membership.organization}"

    @property
    def is_open(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > timezone.now()


class Agent(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=AgentKind.choices, default=AgentKind.CLAUDE_CODE)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="agents")
    environment = models.CharField(max_length=20, choices=Environment.choices, default=Environment.DEV)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="agents"
    )
    is_active = models.BooleanField(default=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="agent_unique_name_per_org"),
        ]
        indexes = [models.Index(fields=["organization", "team", "kind", "environment", "is_active"])]

    def __str__(self):
        return self.name


class AgentToken(models.Model):
    """Bearer token of an agent's sidecar. Only a sha256 digest is stored; the token is shown once."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tokens")
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.agent} token {self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class UserToken(models.Model):
    """Personal API token for people and CI (policy repo pipelines). Stored as a digest."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.user} token {self.name}"


class AdminAuditLog(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="admin_audit_log")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=20, choices=AuditAction.choices)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.actor_name} {self.action} {self.object_type} {self.object_repr}"
