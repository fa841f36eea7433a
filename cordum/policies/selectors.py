"""Reads for the policies app. `bundle_for_agent` is the one place that decides which bundle an agent gets."""


from django.db.models import QuerySet

from cordum.common.errors import CordumError, NotFound
from cordum.policies import engine
from cordum.policies.choices import DriftStatus, KeyStatus
from cordum.policies.filters import PolicyVersionFilterForm
from cordum.policies.models import PolicyBundle, PolicyRepository, PolicyVersion, SigningKey, ToolDrift


def repository_list(*, organization) -> QuerySet[PolicyRepository]:
    return PolicyRepository.objects.filter(organization=organization).order_by("name")


def repository_get(*, organization, pk) -> PolicyRepository:
    repository = PolicyRepository.objects.filter(organization=organization, pk=pk).first()
    if repository is None:
        raise NotFound("No such policy repository in this organisation.")
    return repository


def policy_version_list(*, organization, filters: dict | None = None) -> QuerySet[PolicyVersion]:
    """Versions of the organisation's repositories; filters: repository, branch, commit (prefix), valid, live."""
    filters = PolicyVersionFilterForm.parse(filters or {})
    qs = PolicyVersion.objects.filter(repository__organization=organization).select_related("repository")
    if filters.get("repository"):
        qs = qs.filter(repository_id=filters["repository"])
    if filters.get("branch"):
        qs = qs.filter(branches__contains=[filters["branch"]]) if _json_contains_ok() else qs.filter(
            branches__icontains=f'"{filters["branch"]}"'
        )
    if filters.get("commit"):
        qs = qs.filter(commit_sha__startswith=str(filters["commit"]).lower())
    if filters.get("valid") in ("true", "false", True, False):
        qs = qs.filter(is_valid=filters["valid"] in ("true", True))
    if filters.get("live") in ("true", True):
        qs = qs.filter(is_live=True)
    return qs.order_by("-committed_at", "-id")


def _json_contains_ok() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


def policy_version_get(*, organization, pk) -> PolicyVersion:
    version = PolicyVersion.objects.filter(repository__organization=organization, pk=pk).select_related(
        "repository"
    ).first()
    if version is None:
        raise NotFound("No such policy version in this organisation.")
    return version


def policy_version_lookup(*, repository: PolicyRepository, commit: str = "", branch: str = "") -> PolicyVersion:
    """The version of a commit (full or abbreviated sha) or the newest version on a branch."""
    qs = PolicyVersion.objects.filter(repository=repository)
    if commit:
        matches = list(qs.filter(commit_sha__startswith=commit.lower()).order_by("-committed_at")[:2])
        if len(matches) > 1:
            raise CordumError(f"Invalid input: commit: {commit} is ambiguous (several synced commits start with it); "
                              "give more digits.", {"field": "commit"})
        version = matches[0] if matches else None
        if version is None:
            head_of = {b: sha for b, sha in (repository.branch_heads or {}).items() if sha.startswith(commit.lower())}
            hint = " (that commit does not touch the policy file)" if head_of else " (not synced yet?)"
            raise NotFound(f"No policy version for commit {commit}{hint}.", {"commit": commit})
        return version
    if branch:
        version = policy_version_list(organization=repository.organization,
                                      filters={"repository": repository.pk, "branch": branch}).first()
        if version is None:
            raise NotFound(f"No policy version on branch {branch!r} (not synced yet?).", {"branch": branch})
        return version
    raise CordumError("Invalid input: give commit=<sha> or branch=<name>.", {"field": "commit"})


def repository_branch_list(*, repository: PolicyRepository) -> list[dict]:
    """Every synced branch and pull/merge request head with its head version (author, validity), newest first.

    A head whose commit left the policy file untouched has no version of its own; it sorts last."""
    heads = repository.branch_heads or {}
    versions = {v.commit_sha: v for v in PolicyVersion.objects.filter(repository=repository,
                                                                        commit_sha__in=set(heads.values()))}
    rows = [{"name": name, "head": sha, "version": versions.get(sha)} for name, sha in heads.items()]
    rows.sort(key=lambda row: row["name"])
    rows.sort(key=lambda row: row["version"].committed_at.timestamp() if row["version"] else float("-inf"),
              reverse=True)
    return rows


def live_version(*, repository: PolicyRepository) -> PolicyVersion | None:
    return PolicyVersion.objects.filter(repository=repository, is_live=True).first()


def previous_version(*, version: PolicyVersion) -> PolicyVersion | None:
    """The version of the commit's parent chain: the nearest older valid version sharing a branch."""
    qs = PolicyVersion.objects.filter(repository=version.repository, is_valid=True,
                                      committed_at__lte=version.committed_at).exclude(pk=version.pk)
    branch = (version.branches or [None])[0]
    candidates = [v for v in qs.order_by("-committed_at", "-id")[:200] if branch is None or branch in v.branches]
    return candidates[0] if candidates else None


def policy_version_review(*, version: PolicyVersion) -> dict:
    """Validity, errors and the semantic diff against the live version and the previous one (for UI and CI)."""
    live = live_version(repository=version.repository)
    previous = previous_version(version=version)
    out = {
        "version": version.version, "commit": version.commit_sha, "is_valid": version.is_valid,
        "is_live": version.is_live, "errors": version.errors, "warnings": version.warnings,
        "live_version": live.version if live else None,
        "previous_version": previous.version if previous else None,
        "diff_vs_live": None, "diff_vs_previous": None,
    }
    if version.is_valid:
        try:
            out["diff_vs_live"] = engine.diff(live.policy if live else None, version.policy)
            out["diff_vs_previous"] = engine.diff(previous.policy if previous else None, version.policy)
        except ImportError:  # engine diff not available in this build
            pass
    return out


def signing_key_list(*, organization, active_only: bool = False) -> QuerySet[SigningKey]:
    qs = SigningKey.objects.filter(organization=organization)
    return qs.filter(status=KeyStatus.ACTIVE) if active_only else qs


def policy_bundle_list(*, organization) -> QuerySet[PolicyBundle]:
    return PolicyBundle.objects.filter(organization=organization).select_related("version", "repository")


# --- tool pinning -------------------------------------------------------------------------------------------------
def tool_drift_list(*, organization, status: str = "") -> QuerySet[ToolDrift]:
    """Drifts sidecars reported for the organisation's agents, newest first; `status`: open or proposed."""
    qs = ToolDrift.objects.filter(organization=organization).select_related("agent")
    if status:
        if status not in DriftStatus.values:
            raise CordumError(f"Unknown drift status {status!r}: use {' or '.join(DriftStatus.values)}.",
                              {"field": "status"})
        qs = qs.filter(status=status)
    return qs.order_by("-last_seen_at", "-id")


def tool_drift_get(*, organization, pk) -> ToolDrift:
    drift = tool_drift_list(organization=organization).filter(pk=pk).first()
    if drift is None:
        raise NotFound("No such tool drift in this organisation.")
    return drift


_DIFF_CSS = (("+++", "d-file"), ("---", "d-file"), ("@@", "d-hunk"), ("+", "d-add"), ("-", "d-del"))


def tool_drift_diff(*, drift) -> dict[str, list[tuple[str, str]]]:
    """Unified diffs, pinned -> listed, of the tool's description and of its input schema (the engine's one
    drift diff), as [(css class, line)] for a coloured view (escaping stays with the template)."""
    from cordum.policy.toollock import drift_diff

    return {key: [(next((css for prefix, css in _DIFF_CSS if line.startswith(prefix)), "d-ctx"), line)
                  for line in lines]
            for key, lines in drift_diff(drift.tool, drift.locked, drift.seen).items()}
