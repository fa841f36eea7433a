"""Posting a policy change's result back to its forge: a commit status on the head and one summary comment per
pull request, updated in place. GitHub through githubkit (its REST client; no hand-written HTTP).

The comment carries a hidden marker, so the one Cordum wrote is found again even when its id was lost.
"""

from __future__ import annotations

from dataclasses import dataclass

COMMENT_MARKER = "<!-- cordum:policy-change -->"
STATUS_CONTEXT = "cordum/policy"
STATES = ("pending", "success", "failure", "error")


class ForgeError(Exception):
    """The forge refused or could not be reached; the message says which call and why (no token in it)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class GitHubForge:
    api_url: str
    token: str
    owner: str
    name: str

    @classmethod
    def for_repository(cls, repository) -> GitHubForge | None:
        """The forge of a policy repository, or None when posting is not configured (no owner/name or token)."""
        if not repository.forge_repository or "/" not in repository.forge_repository or not repository.forge_token:
            return None
        owner, name = repository.forge_repository.split("/", 1)
        return cls(repository.forge_api_url or "https://api.github.com", repository.forge_token, owner, name)

    def _client(self):
        from githubkit import GitHub

        return GitHub(self.token, base_url=self.api_url, http_cache=False, auto_retry=False, timeout=20)

    def _call(self, what: str, fn):
        from githubkit.exception import GitHubException, RequestFailed

        try:
            return fn()
        except RequestFailed as exc:
            status = exc.response.status_code
            raise ForgeError(f"GitHub refused {what} ({status}).", status) from None
        except GitHubException as exc:
            raise ForgeError(f"GitHub could not be reached for {what}: {type(exc).__name__}.") from None

    def set_status(self, *, sha: str, state: str, description: str, target_url: str) -> None:
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        data = {"state": state, "description": description[:140], "context": STATUS_CONTEXT}
        if target_url:
            data["target_url"] = target_url
        with self._client() as gh:
            self._call("the commit status", lambda: gh.rest.repos.create_commit_status(
                self.owner, self.name, sha, data=data))

    def upsert_comment(self, *, issue_number: int, body: str, comment_id: int | None) -> int:
        """Update Cordum's comment on the pull request in place (by id, else found by its marker), or create it;
        returns its id."""
        body = f"{COMMENT_MARKER}\n{body}"
        with self._client() as gh:
            if comment_id is None:
                comment_id = self._find_comment(gh, issue_number)
            if comment_id is not None:
                try:
                    self._call("updating the comment", lambda: gh.rest.issues.update_comment(
                        self.owner, self.name, comment_id, data={"body": body}))
                    return comment_id
                except ForgeError as exc:
                    if exc.status != 404:  # deleted by someone: write a new one; anything else is an error
                        raise
            created = self._call("the comment", lambda: gh.rest.issues.create_comment(
                self.owner, self.name, issue_number, data={"body": body}))
            return int(created.json()["id"])

    def _find_comment(self, gh, issue_number: int) -> int | None:
        page = 1
        while page <= 10:  # 1,000 comments: far past any pull request Cordum has to find its own in
            response = self._call("listing comments", lambda p=page: gh.rest.issues.list_comments(
                self.owner, self.name, issue_number, per_page=100, page=p))
            comments = response.json()
            for comment in comments:
                if COMMENT_MARKER in (comment.get("body") or ""):
                    return int(comment["id"])
            if len(comments) < 100:
                return None
            page += 1
        return None
