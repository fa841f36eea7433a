"""Writes for the policies app: repositories, git sync, signing keys and bundle publication."""

import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from cordum.accounts.choices import AuditAction
from cordum.accounts.models import Organization
from cordum.accounts.services import audit_log_record, snapshot
from cordum.common import crypto, notify
from cordum.common.errors import Conflict, CordumError
from cordum.policies import engine, gitrepo
from cordum.policies.choices import KeyStatus, SyncStatus
from cordum.policies.models import PolicyBundle, PolicyRepository, PolicyVersion, SigningKey
from cordum.sidecar import bundles as bundle_format

log = logging.getLogger(__name__)

# A sync that has not finished after this long is presumed dead (worker killed) and may be taken over.
STALE_SYNC_AFTER = timedelta(minutes=15)
TAG_PATTERN = "v"


def bundle_channel(organization_id: int) -> str:
    """notify channel on which a new bundle for the organisation is announced (long-polls wait on it)."""
    return f"bundles:{organization_id}"


# --- repositories -------------------------------------------------------------------------------
@transaction.atomic
def repository_create(*, organization: Organization, actor, name: str, url: str, branch: str = "main",
                      policy_path: str = "safety.yaml", credentials: str = "", webhook_secret: str = "",
                      is_enabled: bool = True, forge_repository: str = "", forge_api_url: str = "",
                      forge_token: str = "") -> tuple[PolicyRepository, str]:
    """Create the organisation's policy repository; returns it and its webhook secret (generated when not given;
    shown once). One per organisation: its live branch's safety.yaml is the one policy every sidecar enforces."""
    existing = PolicyRepository.objects.filter(organization=organization).first()
    if existing is not None:
        raise Conflict(
            f"{organization.slug} already has a policy repository ({existing.name}): every agent of an organisation "
            "enforces one safety.yaml. Edit that repository to point at another URL, branch or path instead."
        )
    if PolicyRepository.objects.filter(organization=organization, name=name).exists():
        raise CordumError(f"A repository named {name!r} already exists.", {"field": "name"})
    refusal = gitrepo.url_refusal(url, organization_id=organization.pk)
    if refusal:
        raise CordumError(refusal, {"field": "url"})
    webhook_secret = webhook_secret or secrets.token_urlsafe(32)
    repository = PolicyRepository(organization=organization, name=name, url=url.strip(), branch=branch.strip(),
                                  policy_path=policy_path.strip().lstrip("/"), is_enabled=is_enabled,
                                  forge_repository=forge_repository.strip(),
                                  forge_api_url=(forge_api_url or "https://api.github.com").strip())
    repository.credentials = credentials
    repository.webhook_secret = webhook_secret
    repository.forge_token = forge_token
    repository.save()
    audit_log_record(organization=organization, actor=actor, action=AuditAction.CREATE, obj=repository,
                     after=snapshot(repository))
    return repository, webhook_secret


@transaction.atomic
def repository_update(*, repository: PolicyRepository, actor, **fields) -> PolicyRepository:
    """Update fields; `credentials`/`webhook_secret` are replaced only when a non-empty value is given."""
    before = snapshot(repository)
    if "url" in fields and fields["url"].strip() != repository.url:
        refusal = gitrepo.url_refusal(fields["url"], organization_id=repository.organization_id)
        if refusal:
            raise CordumError(refusal, {"field": "url"})
    for secret_field in ("credentials", "webhook_secret", "forge_token"):
        value = fields.pop(secret_field, None)
        if value:
            setattr(repository, secret_field, value)
    if fields.pop("clear_credentials", False):
        repository.credentials = ""
    for key, value in fields.items():
        setattr(repository, key, value.strip() if isinstance(value, str) else value)
    repository.save()
    audit_log_record(organization=repository.organization, actor=actor, action=AuditAction.UPDATE,
                     obj=repository, before=before, after=snapshot(repository))
    return repository


@transaction.atomic
def repository_delete(*, repository: PolicyRepository, actor) -> None:
    if repository.bundles.exists():
        raise Conflict("This repository has published bundles; disable it instead of deleting it.")
    audit_log_record(organization=repository.organization, actor=actor, action=AuditAction.DELETE,
                     obj=repository, before=snapshot(repository))
    repository.delete()


def repository_sync_request(*, repository: PolicyRepository, actor=None) -> None:
    """Mark the repository queued and enqueue a sync after the current transaction commits."""
    from cordum.policies.tasks import repository_sync_task

    PolicyRepository.objects.filter(pk=repository.pk).exclude(sync_status=SyncStatus.SYNCING).update(
        sync_status=SyncStatus.QUEUED, sync_progress=0, sync_message="Queued"
    )
    if actor is not None:
        audit_log_record(organization=repository.organization, actor=actor, action=AuditAction.ACTION,
                         obj=repository, after={"action": "sync"})
    pk = repository.pk
    transaction.on_commit(lambda: repository_sync_task.delay(pk))


# --- sync ---------------------------------------------------------------------------------------
@dataclass
class SyncResult:
    skipped: bool = False
    new_versions: list[str] = field(default_factory=list)
    invalid_versions: list[str] = field(default_factory=list)
    live_version: str | None = None
    published_bundle: int | None = None  # sequence
    warning: str = ""


def _progress(repository: PolicyRepository, percent: int, message: str, on_progress=None) -> None:
    """Record sync progress for the UI (polled by htmx) and, from the command line, report it there too."""
    percent = max(0, min(100, percent))
    PolicyRepository.objects.filter(pk=repository.pk).update(sync_progress=percent, sync_message=message[:300])
    if on_progress is not None:
        on_progress(percent, message)


def _acquire(repository: PolicyRepository) -> bool:
    """One sync per repository at a time: flip the status to SYNCING only if nobody holds it."""
    now = timezone.now()
    taken = (
        PolicyRepository.objects.filter(pk=repository.pk)
        .filter(~Q(sync_status=SyncStatus.SYNCING) | Q(sync_started_at__lt=now - STALE_SYNC_AFTER))
        .update(sync_status=SyncStatus.SYNCING, sync_started_at=now, sync_progress=0,
                sync_message="Fetching", resync_requested=False)
    )
    if not taken:
        # Someone else is syncing: ask them to go round once more so this trigger's commits are seen.
        PolicyRepository.objects.filter(pk=repository.pk).update(resync_requested=True)
    return bool(taken)


def _human_version(*, tag: str, branch: str, sha: str) -> str:
    return f"{tag or branch}@{sha[:7]}"


def _best_tag(names: list[str]) -> str:
    """Prefer version-like tags (v1.7.1), highest first."""
    if not names:
        return ""

    def key(name: str):
        parts = name.lstrip("vV").replace("-", ".").split(".")
        return (name[:1] in "vV", [int(p) if p.isdigit() else -1 for p in parts], name)

    return max(names, key=key)


def sync_repository(*, repository: PolicyRepository, on_progress=None) -> SyncResult:
    """Fetch the repository and record a PolicyVersion for every new commit touching the policy file.

    Incremental (only commits after each branch's last synced head), one sync per repository at a
    time, and safe to re-run. On the live branch the newest valid version becomes live and is
    published as a signed bundle. Raises gitrepo.GitFetchError when the remote is unreachable (the
    Celery task retries with backoff); the error is kept in `last_error` for the UI. `on_progress(percent,
    message)` is called as the sync advances (`manage.py sync_policies` prints it).
    """
    if not _acquire(repository):
        return SyncResult(skipped=True)
    result = SyncResult()
    try:
        while True:
            repository.refresh_from_db()
            _sync_once(repository, result, on_progress)
            # A trigger that arrived while we were busy asked for one more round.
            again = PolicyRepository.objects.filter(pk=repository.pk, resync_requested=True).update(
                resync_requested=False
            )
            if not again:
                break
    except Exception as exc:
        message = str(exc) if isinstance(exc, gitrepo.GitFetchError | CordumError) else f"{type(exc).__name__}: {exc}"
        PolicyRepository.objects.filter(pk=repository.pk).update(
            sync_status=SyncStatus.FAILED, last_error=message[:5000], sync_message="Failed", sync_started_at=None
        )
        raise
    PolicyRepository.objects.filter(pk=repository.pk).update(
        sync_status=SyncStatus.COMPLETED, last_synced_at=timezone.now(), last_error=result.warning,
        sync_progress=100, sync_message="Up to date", sync_started_at=None,
    )
    repository.refresh_from_db()
    return result


def _sync_once(repository: PolicyRepository, result: SyncResult, on_progress=None) -> None:  # noqa: C901 - one sync under one lock and one repository handle (fetch, walk new commits, record versions, publish); to be split (issue 19)
    _progress(repository, 0, "Fetching", on_progress)
    repo = gitrepo.fetch(repository)
    heads = gitrepo.branch_heads(repo)
    tags = gitrepo.tags_by_commit(repo)
    known_heads = dict(repository.branch_heads or {})
    path = repository.policy_path
    existing = {v.commit_sha: v for v in PolicyVersion.objects.filter(repository=repository)}

    # 1. Which commits touching the policy are new, and on which branches they now are.
    _progress(repository, 10, "Walking new commits", on_progress)
    found: dict[str, object] = {}  # sha -> git.Commit
    branches_of: dict[str, set[str]] = {}
    branch_order = sorted(heads, key=lambda b: (b != repository.branch, b))  # live branch first
    for branch in branch_order:
        head = heads[branch]
        since = known_heads.get(branch)
        if since == head:
            continue
        rev = head
        if since:
            try:
                if repo.is_ancestor(since, head):
                    rev = f"{since}..{head}"
            except Exception:  # noqa: S110 - the old head is gone (force push): walk the branch again
                pass
        for commit in repo.iter_commits(rev, paths=path):
            found.setdefault(commit.hexsha, commit)
            branches_of.setdefault(commit.hexsha, set()).add(branch)

    # 2. Record new versions (validated by the policy engine); extend branch lists of known ones.
    new_shas = [sha for sha in found if sha not in existing]
    total = max(1, len(new_shas))
    to_create = []
    for index, sha in enumerate(new_shas):
        commit = found[sha]
        branches = sorted(branches_of[sha], key=lambda b: (b != repository.branch, b))
        tag = _best_tag(tags.get(sha, []))
        version = _human_version(tag=tag, branch=branches[0], sha=sha)
        try:
            text = gitrepo.blob_text(commit, path, max_bytes=engine.MAX_POLICY_BYTES)
            parsed = engine.parse_policy(text, filename=path, version=version)
        except gitrepo.BlobTooLarge as exc:  # never read, never stored: recorded invalid like any bad policy
            text, parsed = "", engine.parse_oversized(size=exc.size, filename=path)
        to_create.append(PolicyVersion(
            repository=repository, commit_sha=sha, parent_sha=commit.parents[0].hexsha if commit.parents else "",
            author=commit.author.name or "", author_email=commit.author.email or "",
            message=commit.message.strip(), committed_at=commit.committed_datetime,
            branches=branches, tag=tag, version=version, source_text=text or "",
            policy=parsed.policy, content_sha256=parsed.content_sha256, is_valid=parsed.is_valid,
            errors=parsed.errors, warnings=parsed.warnings,
        ))
        (result.new_versions if parsed.is_valid else result.invalid_versions).append(version)
        if index % 10 == 0:
            _progress(repository, 20 + int(60 * index / total), f"Validating {index + 1}/{len(new_shas)} commits",
                      on_progress)
    to_update = []
    distributed = set(PolicyBundle.objects.filter(repository=repository).values_list("version_id", flat=True))
    for sha, branches in branches_of.items():
        version = existing.get(sha)
        if version is not None and not branches.issubset(version.branches):
            version.branches = sorted(set(version.branches) | branches,
                                      key=lambda b: (b != repository.branch, b))
            if not version.tag and version.pk not in distributed:
                # A reviewed branch merged into the live branch: name it after the live branch, as long as no
                # bundle (hence no evidence record) carries the old name yet.
                version.version = _human_version(tag="", branch=version.branches[0], sha=sha)
            to_update.append(version)
    # Tags may be added to commits already recorded (tagging a release after the fact).
    for sha, names in tags.items():
        version = existing.get(sha)
        if version is not None and version.tag != _best_tag(names):
            version.tag = _best_tag(names)
            version.version = _human_version(tag=version.tag, branch=(version.branches or ["?"])[0], sha=sha)
            if version not in to_update:
                to_update.append(version)
    with transaction.atomic():
        PolicyVersion.objects.bulk_create(to_create, ignore_conflicts=True)
        if to_update:
            PolicyVersion.objects.bulk_update(to_update, ["branches", "tag", "version"])

    # 3. The newest valid version on the live branch becomes live and is published.
    _progress(repository, 85, "Selecting the live version", on_progress)
    live_head = heads.get(repository.branch)
    if live_head:
        valid = set(PolicyVersion.objects.filter(repository=repository, is_valid=True).values_list("commit_sha",
                                                                                                    flat=True))
        newest_valid = next((c.hexsha for c in repo.iter_commits(live_head, paths=path) if c.hexsha in valid), None)
        if newest_valid:
            result.live_version = _make_live(repository, newest_valid, repo=repo, result=result)
    else:
        result.warning = f"The live branch {repository.branch!r} does not exist in the repository."

    PolicyRepository.objects.filter(pk=repository.pk).update(branch_heads=heads)


def _make_live(repository: PolicyRepository, sha: str, *, repo, result: SyncResult) -> str:
    with transaction.atomic():
        version = PolicyVersion.objects.select_for_update().get(repository=repository, commit_sha=sha)
        previous = PolicyVersion.objects.filter(repository=repository, is_live=True).exclude(pk=version.pk).first()
        if previous is None and version.is_live:
            if not version.bundles.exists():
                _publish_or_warn(version, rollback=False, result=result)
            return version.version
        if previous is not None:
            PolicyVersion.objects.filter(pk=previous.pk).update(is_live=False)
        PolicyVersion.objects.filter(pk=version.pk).update(is_live=True)
        version.is_live = True
        # Moving the live branch back to an ancestor of the previous live commit is a rollback.
        rollback = False
        if previous is not None:
            try:
                rollback = repo.is_ancestor(version.commit_sha, previous.commit_sha)
            except Exception:
                rollback = False
        _publish_or_warn(version, rollback=rollback, result=result)
    return version.version


def _publish_or_warn(version: PolicyVersion, *, rollback: bool, result: SyncResult) -> None:
    try:
        bundle = bundle_publish(version=version, rollback=rollback)
    except CordumError as exc:
        result.warning = exc.message
    else:
        result.published_bundle = bundle.sequence


# --- signing keys -------------------------------------------------------------------------------
@transaction.atomic
def signing_key_create(*, organization: Organization, actor=None, republish: bool = True) -> SigningKey:
    """A new active Ed25519 key. The current bundle is re-signed so it carries the new key's signature."""
    private, public = bundle_format.generate_keypair()
    key_id = bundle_format.key_id_for(public)
    endorsers = SigningKey.objects.filter(organization=organization, status=KeyStatus.ACTIVE).order_by("created_at")
    key = SigningKey.objects.create(
        organization=organization, key_id=key_id, public_key=public, private_key_encrypted=crypto.encrypt(private),
        endorsements=[bundle_format.key_endorse(key_id=key_id, public_key=public, signer_key_id=k.key_id,
                                                signer_private_key=k.private_key) for k in endorsers],
    )
    audit_log_record(organization=organization, actor=actor, action=AuditAction.CREATE, obj=key,
                     after={"key_id": key.key_id, "status": key.status})
    if republish:
        _republish_current(organization)
    return key


@transaction.atomic
def signing_key_retire(*, key: SigningKey, actor=None, republish: bool = True) -> SigningKey:
    if key.status == KeyStatus.RETIRED:
        return key
    others = SigningKey.objects.filter(organization=key.organization, status=KeyStatus.ACTIVE).exclude(pk=key.pk)
    if not others.exists() and PolicyBundle.objects.filter(organization=key.organization).exists():
        raise CordumError("This is the last active signing key; create a new key before retiring it.")
    key.status, key.retired_at = KeyStatus.RETIRED, timezone.now()
    key.save(update_fields=["status", "retired_at"])
    audit_log_record(organization=key.organization, actor=actor, action=AuditAction.UPDATE, obj=key,
                     before={"status": KeyStatus.ACTIVE}, after={"status": KeyStatus.RETIRED})
    if republish:
        _republish_current(key.organization)
    return key


@transaction.atomic
def signing_key_rotate(*, organization: Organization, actor=None, retire_old: bool = True) -> SigningKey:
    """Create a new active key, then (unless told to keep them for a grace period) retire the old ones."""
    old = list(SigningKey.objects.filter(organization=organization, status=KeyStatus.ACTIVE))
    new = signing_key_create(organization=organization, actor=actor, republish=not retire_old or not old)
    if retire_old:
        for key in old:
            signing_key_retire(key=key, actor=actor, republish=False)
        if old:
            _republish_current(organization)
    return new


def _republish_current(organization: Organization) -> PolicyBundle | None:
    current = PolicyBundle.objects.filter(organization=organization).select_related("version").first()
    if current is None:
        live = PolicyVersion.objects.filter(repository__organization=organization, is_live=True).first()
        if live is None:
            return None
        return bundle_publish(version=live)
    return bundle_publish(version=current.version, rollback=current.rollback)


# --- bundles ------------------------------------------------------------------------------------
@transaction.atomic
def bundle_publish(*, version: PolicyVersion, rollback: bool = False) -> PolicyBundle:
    """Sign a valid version with every active key and publish it with the next sequence of the org."""
    if not version.is_valid or version.policy is None:
        raise CordumError(f"{version.version} is not a valid policy and is never distributed.")
    repository = version.repository
    organization = Organization.objects.select_for_update().get(pk=repository.organization_id)
    keys = list(SigningKey.objects.filter(organization=organization, status=KeyStatus.ACTIVE).order_by("created_at"))
    if not keys:
        raise CordumError(
            f"No active signing key for {organization.slug}: {version.version} is live but no bundle was published. "
            "Create one (Policies → Keys, or manage.py signing_key_create)."
        )
    sequence = (PolicyBundle.objects.filter(organization=organization).aggregate(m=Max("sequence"))["m"] or 0) + 1
    manifest = {
        "org": organization.slug, "repo": repository.name, "repo_id": repository.pk, "commit": version.commit_sha,
        "version": version.version, "sequence": sequence, "rollback": bool(rollback),
        "created_at": timezone.now().isoformat().replace("+00:00", "Z"),
    }
    bundle = bundle_format.bundle_build(policy_dict=version.policy, manifest=manifest)
    for key in keys:
        bundle = bundle_format.bundle_sign(bundle, key_id=key.key_id, private_key=key.private_key)
    try:
        with transaction.atomic():
            published = PolicyBundle.objects.create(
                organization=organization, repository=repository, version=version, sequence=sequence,
                rollback=bool(rollback), manifest=bundle["manifest"], bundle=bundle,
                etag=bundle_format.bundle_etag(bundle),
            )
    except IntegrityError:
        raise Conflict("Another bundle was published at the same moment; retry.") from None
    org_id = organization.pk
    transaction.on_commit(lambda: notify.publish(bundle_channel(org_id), str(sequence)))
    log.info("published bundle #%s %s for %s", sequence, version.version, organization.slug)
    return published
