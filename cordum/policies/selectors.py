"""Reads for the policies app. `bundle_for_agent` is the one place that decides which bundle an agent gets."""


from django.db.models import QuerySet

from cordum.common.errors import CordumError, NotFound
from cordum.policies import engine, gitrepo
from cordum.policies.choices import KeyStatus
from cordum.policies.filters import PolicyVersionFilterForm
from cordum.policies.models import PolicyBundle, PolicyRepository, PolicyVersion, SigningKey


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


# --- policy changes (a branch or pull/merge request head, judged against the live version) ----------------
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's empty tree: the base when nothing is live yet


def _read_blob(repo, sha: str, path: str, max_bytes: int) -> str | None:
    try:
        return gitrepo.blob_text(repo.commit(sha), path, max_bytes=max_bytes)
    except gitrepo.BlobTooLarge as exc:
        return f"# {path} is {exc.size} bytes, over the limit of {max_bytes}: not read\n"


def repository_change_heads(*, repository: PolicyRepository, known: dict | None = None) -> list[dict]:
    """Every branch and pull/merge request head except the live branch: {"ref", "head", "version"}, where
    version is the PolicyVersion of the newest commit on that head that touched the policy file (None before
    it is synced). `known`: ref -> (head sha, version) from the last time; a head that has not moved since is
    not walked again (a poll of a repository with many pull requests stays cheap)."""
    repo = gitrepo.open_cache(repository)
    heads = {ref: sha for ref, sha in (repository.branch_heads or {}).items() if ref != repository.branch}
    if repo is None or not heads:
        return []
    known = known or {}
    reused = {ref: known[ref][1] for ref, sha in heads.items()
              if ref in known and known[ref][0] == sha and known[ref][1] is not None}
    shas = {ref: gitrepo.newest_commit_touching(repo, sha, repository.policy_path)
            for ref, sha in heads.items() if ref not in reused}
    versions = {v.commit_sha: v for v in PolicyVersion.objects.filter(repository=repository,
                                                                        commit_sha__in=set(shas.values()))}
    return [{"ref": ref, "head": heads[ref], "version": reused.get(ref) or versions.get(shas.get(ref))}
            for ref in sorted(heads)]


def repository_gates_text(*, repository: PolicyRepository) -> tuple[str | None, str]:
    """The gates every change is judged by: `cordum.yaml` at the head of the live branch (a pull request cannot
    relax the gates it is judged by), and that commit. (None, "") when there is none."""
    repo = gitrepo.open_cache(repository)
    head = (repository.branch_heads or {}).get(repository.branch)
    if repo is None or not head:
        return None, ""
    return _read_blob(repo, head, engine.GATES_FILENAME, engine.MAX_GATES_BYTES), head


def _attach_issues(files: list[dict], issues_by_path: dict[str, list[dict]]) -> None:
    """Put each validation issue on the new-side line it names; issues on lines the diff does not show go to
    the file's `issues_elsewhere` (listed above its lines)."""
    for entry in files:
        issues = issues_by_path.get(entry["path"], [])
        shown: set[int] = set()
        by_line: dict[int, list[dict]] = {}
        for issue in issues:
            by_line.setdefault(int(issue.get("line") or 1), []).append(issue)
        for line in entry["lines"]:
            if line["new"] in by_line:
                line["issues"] = by_line[line["new"]]
                shown.add(line["new"])
        entry["issues_elsewhere"] = [i for n, group in sorted(by_line.items()) if n not in shown for i in group]


def policy_change_review(*, repository: PolicyRepository, ref: str) -> dict:
    """A branch or pull/merge request head against the live version: the version at that head (validity, errors),
    the semantic diff with file:line links, and a numbered line diff of every changed file with validation
    issues at their lines (safety.yaml's, and cordum.yaml's when the change touches the gates)."""
    heads = repository.branch_heads or {}
    if ref not in heads:
        raise NotFound(f"No branch or pull/merge request {ref!r} in {repository.name} (not synced yet?).",
                       {"ref": ref})
    repo = gitrepo.open_cache(repository)
    if repo is None:
        raise NotFound(f"{repository.name} has not been synced yet.", {"ref": ref})
    head = heads[ref]
    live = live_version(repository=repository)
    sha = gitrepo.newest_commit_touching(repo, head, repository.policy_path)
    version = PolicyVersion.objects.filter(repository=repository, commit_sha=sha).first() if sha else None
    out = {"ref": ref, "head": head, "head_commit": None, "version": version, "live": live, "semantic": None,
           "files": [], "more_files": 0, "gates_errors": [], "is_live_branch": ref == repository.branch}
    commit = repo.commit(head)
    out["head_commit"] = {"sha": head, "author": commit.author.name or "", "message": commit.message.strip(),
                          "committed_at": commit.committed_datetime}
    if version is not None and version.is_valid and live is not None and live.pk != version.pk:
        out["semantic"] = engine.diff_located(old=live.policy, old_text=live.source_text, new=version.policy,
                                              new_text=version.source_text, filename=repository.policy_path)
    elif version is not None and version.is_valid and live is None:
        out["semantic"] = engine.diff_located(old=None, old_text="", new=version.policy,
                                              new_text=version.source_text, filename=repository.policy_path)
    diffs = gitrepo.file_diffs(repo, live.commit_sha if live else EMPTY_TREE, head)
    out["files"], out["more_files"] = diffs["files"], diffs["more_files"]
    issues = {repository.policy_path: [*({**e, "severity": "error"} for e in version.errors),
                                       *({**w, "severity": "warning"} for w in version.warnings)]
              } if version is not None else {}
    if any(f["path"] == engine.GATES_FILENAME for f in out["files"]):
        out["gates_errors"] = [{**e, "severity": "error"} for e in engine.gates_errors(
            _read_blob(repo, head, engine.GATES_FILENAME, engine.MAX_GATES_BYTES))]
        issues[engine.GATES_FILENAME] = out["gates_errors"]
    _attach_issues(out["files"], issues)
    return out
