"""Git plumbing for policy repositories (GitPython): a bare cache per repository, fetch with credentials.

Credentials never touch disk in git config: an https token goes in as an `http.extraHeader` through
GIT_CONFIG_* environment variables, an ssh deploy key through a 0600 temp file for GIT_SSH_COMMAND.
"""

import base64
import contextlib
import os
import re
import shlex
import tempfile
from pathlib import Path

import git
from django.conf import settings

SSH_URL = re.compile(r"^(ssh://|[\w.-]+@[\w.-]+:)")


class GitFetchError(Exception):
    """The remote could not be fetched (unreachable, auth failure, not a repository)."""


def cache_path(repository) -> Path:
    return Path(settings.CORDUM_GIT_CACHE_DIR) / f"repo-{repository.pk}.git"


REMOTE_SCHEMES = ("https://", "http://", "ssh://", "git://")


def _is_local(url: str) -> bool:
    return not (url.startswith(REMOTE_SCHEMES) or SSH_URL.match(url))


def _remote_url(url: str) -> str:
    if not _is_local(url):
        return url
    return str(Path(url.removeprefix("file://")).expanduser().resolve())  # a local path


def url_refusal(url: str, *, organization_id: int | None = None) -> str | None:
    """Why a repository URL is not accepted, or None. Remote: https, http, ssh (incl. user@host:path), git.
    Local paths (and file://) only where CORDUM_ALLOW_LOCAL_REPOSITORIES is on, only under
    CORDUM_LOCAL_REPOSITORY_ROOTS, never Cordum's own caches and never a path another organisation uses."""
    url = (url or "").strip()
    if not url:
        return "Give the repository's URL."
    if "://" in url and not url.startswith((*REMOTE_SCHEMES, "file://")):
        return f"Unsupported URL scheme in {url!r}: use https://, ssh://, git@host:path or git://."
    if not _is_local(url):
        return None
    if not settings.CORDUM_ALLOW_LOCAL_REPOSITORIES:
        return ("Local paths are not accepted on this server (CORDUM_ALLOW_LOCAL_REPOSITORIES is off): "
                "give an https:// or ssh URL.")
    path = Path(_remote_url(url))
    cache = Path(settings.CORDUM_GIT_CACHE_DIR).expanduser().resolve()
    if path == cache or cache in path.parents:
        return "That path is inside Cordum's own git cache; give the repository's own location."
    roots = [Path(r).expanduser().resolve() for r in settings.CORDUM_LOCAL_REPOSITORY_ROOTS]
    if not any(path == root or root in path.parents for root in roots):
        return (f"Local repositories must be under {', '.join(str(r) for r in roots)} "
                "(CORDUM_LOCAL_REPOSITORY_ROOTS); give a path there or a remote URL.")
    if organization_id is not None:
        from cordum.policies.models import PolicyRepository

        for other in PolicyRepository.objects.exclude(organization_id=organization_id).values_list("url", flat=True):
            if _is_local(other) and Path(_remote_url(other)) == path:
                return "Another organisation's policy repository is at that path; give your repository's own location."
    return None


@contextlib.contextmanager
def _git_env(repository):
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false",
           "GIT_ALLOW_PROTOCOL": "https:http:ssh:git" + (":file" if settings.CORDUM_ALLOW_LOCAL_REPOSITORIES else "")}
    secret = repository.credentials
    key_file = None
    try:
        if secret and SSH_URL.match(repository.url):
            fd, key_file = tempfile.mkstemp(prefix="cordum-deploy-key-")
            with os.fdopen(fd, "w") as handle:
                handle.write(secret.strip() + "\n")
            os.chmod(key_file, 0o600)
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {shlex.quote(key_file)} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new "
                "-o BatchMode=yes"
            )
        elif secret and repository.url.startswith("https://"):
            user_token = secret if ":" in secret else f"x-access-token:{secret}"
            header = "Authorization: Basic " + base64.b64encode(user_token.encode()).decode()
            env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader", "GIT_CONFIG_VALUE_0": header})
        yield env
    finally:
        if key_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(key_file)


def _scrub(text: str, repository) -> str:
    secret = repository.credentials
    if secret:
        text = text.replace(secret, "***")
    return re.sub(r"Authorization: Basic \S+", "Authorization: ***", text)


def fetch(repository) -> git.Repo:
    """Fetch every branch, tag and pull/merge request head (forks included) into the bare cache; return it."""
    refusal = url_refusal(repository.url)
    if refusal:
        raise GitFetchError(f"git fetch from {repository.url} refused: {refusal}")
    path = cache_path(repository)
    path.parent.mkdir(parents=True, exist_ok=True)
    repo = git.Repo(path) if (path / "HEAD").exists() else git.Repo.init(path, bare=True)
    url = _remote_url(repository.url)
    with repo.config_writer() as config:
        config.set_value('remote "origin"', "url", url)
    with _git_env(repository) as env:
        try:
            repo.git.fetch(
                "origin", "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", *_REVIEW_REFSPECS,
                "--prune", "--force",
                "--no-write-fetch-head", env={**os.environ, **env},
            )
        except git.GitCommandError as exc:
            stderr = _scrub((exc.stderr or str(exc)).strip(), repository)
            raise GitFetchError(f"git fetch from {repository.url} failed: {stderr}") from None
    return repo


# GitHub keeps each pull request's head (a fork's too) at refs/pull/N/head, GitLab each merge request's at
# refs/merge-requests/N/head: fetching them is how a fork's proposal gets validated like a branch.
_REVIEW_REF_PREFIXES = ("refs/pull/", "refs/merge-requests/")
_REVIEW_REFSPECS = tuple(f"+{prefix}*/head:{prefix}*/head" for prefix in _REVIEW_REF_PREFIXES)


def branch_heads(repo: git.Repo) -> dict[str, str]:
    """Branch name -> head sha; pull/merge request heads appear as "pull/N/head" / "merge-requests/N/head"."""
    heads = {head.name: head.commit.hexsha for head in repo.heads}
    for ref in repo.refs:
        if ref.path.startswith(_REVIEW_REF_PREFIXES) and ref.path.endswith("/head"):
            heads[ref.path.removeprefix("refs/")] = ref.commit.hexsha
    return heads


def tags_by_commit(repo: git.Repo) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for tag in repo.tags:
        try:
            sha = tag.commit.hexsha
        except ValueError:  # a tag on a non-commit object
            continue
        out.setdefault(sha, []).append(tag.name)
    return out


class BlobTooLarge(Exception):
    """A file bigger than the caller's limit; it was not read."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


def blob_text(commit: git.Commit, path: str, *, max_bytes: int | None = None) -> str | None:
    """The file's text at `commit` (None if absent); raises BlobTooLarge past `max_bytes` without reading it."""
    try:
        blob = commit.tree / path
    except KeyError:
        return None
    if max_bytes is not None and blob.size > max_bytes:
        raise BlobTooLarge(blob.size)
    data = blob.data_stream.read()
    return data.decode("utf-8", errors="replace")


def open_cache(repository) -> git.Repo | None:
    """The bare cache of a synced repository (read only here), or None before the first sync."""
    path = cache_path(repository)
    return git.Repo(path) if (path / "HEAD").exists() else None


def newest_commit_touching(repo: git.Repo, head: str, path: str) -> str | None:
    """The newest commit reachable from `head` that changed `path` (the one whose version a head carries)."""
    commit = next(iter(repo.iter_commits(head, paths=path, max_count=1)), None)
    return commit.hexsha if commit is not None else None


# A change page shows at most this much of a diff; the rest is summarised ("… N more lines").
MAX_DIFF_FILES = 50
MAX_DIFF_LINES_PER_FILE = 2000
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def _file_path(header: str) -> str:
    # "diff --git a/x b/x": paths with spaces are quoted by git; the b/ side names the file after the change.
    rest = header.removeprefix("diff --git ")
    if " b/" in rest:
        return rest.rsplit(" b/", 1)[1].strip('"')
    return rest


def _parse_file(chunk: list[str]) -> dict:
    path = _file_path(chunk[0])
    entry = {"path": path, "status": "modified", "binary": False, "lines": [], "more_lines": 0}
    old_no = new_no = 0
    in_hunks = False
    for raw in chunk[1:]:
        if not in_hunks:
            if raw.startswith("new file"):
                entry["status"] = "added"
            elif raw.startswith("deleted file"):
                entry["status"] = "deleted"
            elif raw.startswith("rename from "):
                entry["status"], entry["old_path"] = "renamed", raw.removeprefix("rename from ")
            elif raw.startswith("Binary files"):
                entry["binary"] = True
            if not raw.startswith("@@"):
                continue
            in_hunks = True
        if len(entry["lines"]) >= MAX_DIFF_LINES_PER_FILE:
            entry["more_lines"] += 1
            continue
        match = _HUNK.match(raw)
        if match:
            old_no, new_no = int(match.group(1)), int(match.group(2))
            entry["lines"].append({"kind": "hunk", "text": raw, "old": None, "new": None})
        elif raw.startswith("+"):
            entry["lines"].append({"kind": "add", "text": raw[1:], "old": None, "new": new_no})
            new_no += 1
        elif raw.startswith("-"):
            entry["lines"].append({"kind": "del", "text": raw[1:], "old": old_no, "new": None})
            old_no += 1
        elif raw.startswith("\\"):
            continue  # "\ No newline at end of file"
        else:
            entry["lines"].append({"kind": "ctx", "text": raw[1:], "old": old_no, "new": new_no})
            old_no, new_no = old_no + 1, new_no + 1
    return entry


def file_diffs(repo: git.Repo, base: str, head: str) -> dict:
    """Every file that differs between two commits, as numbered lines for a red/green view:
    {"files": [{"path", "status", "binary", "lines": [{"kind": add|del|ctx|hunk, "text", "old", "new"}],
    "more_lines"}], "more_files": n}."""
    text = repo.git.diff(base, head, "--no-color", "--no-ext-diff", "-M", "--unified=3", "--")
    chunks: list[list[str]] = []
    for raw in text.splitlines():
        if raw.startswith("diff --git "):
            chunks.append([raw])
        elif chunks:
            chunks[-1].append(raw)
    files = [_parse_file(chunk) for chunk in chunks[:MAX_DIFF_FILES]]
    return {"files": files, "more_files": max(len(chunks) - MAX_DIFF_FILES, 0)}
