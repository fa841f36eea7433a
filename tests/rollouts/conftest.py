"""Fixtures for rollouts and the fleet: an organisation, people by role, agents with tokens."""

import pytest

from cordum.accounts.choices import Role
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory, agent_with_token


@pytest.fixture
def org():
    return OrganizationFactory(slug="acme", name="Acme")


@pytest.fixture
def person(org, client):
    """A logged-in Django test client for a person with the given role in `org`."""

    def _person(role: str):
        membership = MembershipFactory(organization=org, role=role)
        client.force_login(membership.user)
        client.membership = membership
        return client

    return _person


@pytest.fixture
def author(person):
    return person(Role.POLICY_AUTHOR)


@pytest.fixture
def make_agent(org):
    def _make(name: str, team=None):
        agent, issued = agent_with_token(organization=org, name=name, team=team)
        agent.token = issued.plaintext
        return agent

    return _make


@pytest.fixture
def teams(org):
    return {slug: TeamFactory(organization=org, slug=slug, name=slug.title()) for slug in ("payments", "platform")}


def auth(agent) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {agent.token}"}


POLICY_V1 = """version: v1
defaults:
  decision: allow
rules:
  - id: deny-destroy
    match:
      topics: ["job.mcp-bridge.*.destroy"]
    decision: deny
    reason: no destroying infrastructure
"""

POLICY_V2 = POLICY_V1 + """  - id: approve-git-push
    match:
      topics: ["job.mcp-bridge.git.git_push"]
    decision: require_approval
    reason: Git push to remote requires approval
"""

POLICY_V3 = POLICY_V2 + """  - id: deny-env-reads
    match:
      topics: ["job.mcp-bridge.filesystem.read_env"]
    decision: deny
    reason: no secrets
"""

FAST_STAGES = [
    {"name": "shadow", "kind": "shadow", "min_soak_seconds": 0},
    {"name": "canary", "kind": "canary", "teams": ["payments"], "min_soak_seconds": 0},
    {"name": "all", "kind": "all", "min_soak_seconds": 0},
]


@pytest.fixture
def signing_key(org):
    from cordum.policies import services

    return services.signing_key_create(organization=org)


@pytest.fixture
def repository(org, signing_key):
    from cordum.policies.models import PolicyRepository

    return PolicyRepository.objects.create(organization=org, name="policies", url="/nonexistent", branch="main")


def publish_version(repository, text: str, tag: str):
    """A valid version goes live and is published, as the GitOps sync does after a commit lands."""
    import hashlib

    from django.utils import timezone

    from cordum.policies import engine
    from cordum.policies.models import PolicyVersion
    from cordum.policies.services import bundle_publish

    parsed = engine.parse_policy(text, filename="safety.yaml")
    assert parsed.is_valid, parsed.errors
    sha = hashlib.sha1(f"{tag}\n{text}".encode()).hexdigest()
    PolicyVersion.objects.filter(repository=repository, is_live=True).update(is_live=False)
    version = PolicyVersion.objects.create(
        repository=repository, commit_sha=sha, committed_at=timezone.now(), branches=["main"], tag=tag,
        version=f"{tag}@{sha[:7]}", source_text=text, policy=parsed.policy, content_sha256=parsed.content_sha256,
        is_valid=True, is_live=True,
    )
    return bundle_publish(version=version)


@pytest.fixture
def plan(repository):
    from cordum.rollouts.services import rollout_plan_set

    return rollout_plan_set(repository=repository, actor=None, stages=FAST_STAGES, auto_start=True,
                            max_new_restriction_rate=0.05, min_calls=10)


@pytest.fixture
def fleet(teams, make_agent):
    """Two payments agents, two platform agents, one agent without a team."""
    return {
        "pay1": make_agent("claude-pay-1", teams["payments"]),
        "pay2": make_agent("claude-pay-2", teams["payments"]),
        "plat1": make_agent("cursor-plat-1", teams["platform"]),
        "plat2": make_agent("cursor-plat-2", teams["platform"]),
        "loner": make_agent("devin-loner"),
    }


def bundle_for(client, agent):
    """GET /api/v1/bundle as the agent: (manifest version, sequence, rollback, shadow version or None)."""
    response = client.get("/api/v1/bundle", **auth(agent))
    assert response.status_code == 200, response.content
    body = response.json()
    manifest = body["manifest"]
    shadow = body.get("shadow_bundle")
    return manifest["version"], manifest["sequence"], manifest["rollback"], (
        shadow["manifest"]["version"] if shadow else None)
