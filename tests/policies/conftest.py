"""Fixtures for the GitOps tests: real git repositories (a bare "remote" and a working clone) in tmp."""

import hashlib
import hmac
import json

import git
import pytest

from cordum.accounts.choices import Role
from cordum.policies import services
from tests.factories import MembershipFactory, OrganizationFactory, agent_with_token

POLICY_V1 = """version: v1
defaults:
  decision: deny
rules:
  - id: allow-read
    match:
      topics: ["job.mcp-bridge.filesystem.read_*"]
    decision: allow
    reason: reads are fine
"""

POLICY_V2 = POLICY_V1 + """  - id: approve-git-push
    match:
      topics: ["job.mcp-bridge.git.push"]
    decision: require_approval
    reason: Git push to remote requires approval
"""

# Line 8 holds the bad decision.
POLICY_INVALID = POLICY_V1.replace("decision: allow", "decision: maybe")


class Workspace:
    """A bare remote plus a clone people commit to and push from, like a developer's checkout."""

    def __init__(self, root):
        self.remote_path = root / "remote.git"
        self.remote = git.Repo.init(self.remote_path, bare=True, initial_branch="main")
        self.clone = git.Repo.init(root / "work", initial_branch="main")
        with self.clone.config_writer() as config:
            config.set_value("user", "name", "Pat Author")
            config.set_value("user", "email", "pat@example.com")
            config.set_value("commit", "gpgsign", "false")
        self.clone.create_remote("origin", str(self.remote_path))

    def commit(self, text: str, message: str, *, path: str = "safety.yaml", tag: str | None = None,
               branch: str | None = None, push: bool = True) -> str:
        if branch:
            if branch not in [h.name for h in self.clone.heads]:
                self.clone.git.checkout("-b", branch)
            else:
                self.clone.git.checkout(branch)
        target = self.clone.working_tree_dir + "/" + path
        with open(target, "w") as handle:
            handle.write(text)
        self.clone.index.add([path])
        sha = self.clone.index.commit(message).hexsha
        if tag:
            self.clone.create_tag(tag)
        if push:
            self.push()
        if branch:
            self.clone.git.checkout("main")
        return sha

    def push(self):
        self.clone.git.push("origin", "--all", "--force")
        self.clone.git.push("origin", "--tags")


@pytest.fixture(autouse=True)
def git_cache(tmp_path, settings):
    settings.CORDUM_GIT_CACHE_DIR = tmp_path / "git-cache"
    return settings.CORDUM_GIT_CACHE_DIR


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(tmp_path)
    ws.commit(POLICY_V1, "Initial policy", tag="v1.0.0")
    return ws


@pytest.fixture
def org(db):
    return OrganizationFactory(slug="acme", name="Acme")


@pytest.fixture
def admin(org):
    return MembershipFactory(organization=org, role=Role.ADMIN).user


@pytest.fixture
def signing_key(org):
    return services.signing_key_create(organization=org)


@pytest.fixture
def repository(org, workspace, signing_key):
    repository, _secret = services.repository_create(
        organization=org, actor=None, name="policies", url=str(workspace.remote_path), webhook_secret="s3cret-hook"
    )
    return repository


@pytest.fixture
def agent_token(org):
    _agent, issued = agent_with_token(organization=org, name="claude-code-mo")
    return issued.plaintext


def signed_headers(body: bytes, secret: str = "s3cret-hook", style: str = "github") -> dict:
    digest = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if style == "github":
        return {"HTTP_X_HUB_SIGNATURE_256": digest, "HTTP_X_GITHUB_EVENT": "push"}
    if style == "gitlab":
        return {"HTTP_X_GITLAB_TOKEN": secret}
    return {"HTTP_X_CORDUM_SIGNATURE": digest}


def push_payload(ref="refs/heads/main") -> bytes:
    return json.dumps({"ref": ref}).encode()
