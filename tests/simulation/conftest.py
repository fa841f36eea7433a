"""Fixtures for simulation tests: an organisation with the demo's agents, policy versions, recorded calls."""

import datetime as dt

import pytest
from django.utils import timezone

from cordum.accounts.choices import Role
from cordum.decisions.services import evidence_append
from cordum.policies.engine import parse_policy
from cordum.policies.models import PolicyRepository, PolicyVersion
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory, agent_with_token
from tests.simulation.data import BASE_POLICY, CANDIDATE_POLICY, INVALID_POLICY, recorded_calls

AGENTS = [("claude-code-mo", "payments", "dev"), ("cursor-web", "web", "dev"), ("devin-platform", "platform", "staging")]


def make_version(repository, *, text, sha, branches, is_live=False, message="policy change", days_ago=1):
    parsed = parse_policy(text, filename="safety.yaml", version=f"main@{sha[:7]}")
    return PolicyVersion.objects.create(
        repository=repository, commit_sha=sha, committed_at=timezone.now() - dt.timedelta(days=days_ago),
        branches=branches, version=f"{branches[0]}@{sha[:7]}", source_text=text, policy=parsed.policy,
        content_sha256=parsed.content_sha256, is_valid=parsed.is_valid, errors=parsed.errors, is_live=is_live,
        message=message, author="Author",
    )


@pytest.fixture
def sim_org():
    org = OrganizationFactory()
    for name, team_slug, env in AGENTS:
        team = TeamFactory(organization=org, slug=team_slug, name=team_slug.title())
        agent_with_token(organization=org, name=name, team=team, environment=env)
    return org


@pytest.fixture
def versions(sim_org):
    repo = PolicyRepository.objects.create(organization=sim_org, name="policies", url="/nonexistent")
    return {
        "live": make_version(repo, text=BASE_POLICY, sha="a" * 40, branches=["main"], is_live=True, days_ago=10,
                             message="baseline policy"),
        "candidate": make_version(repo, text=CANDIDATE_POLICY, sha="b" * 40, branches=["proposed"],
                                  message="Deny .env reads"),
        "invalid": make_version(repo, text=INVALID_POLICY, sha="c" * 40, branches=["broken"], message="oops"),
    }


@pytest.fixture
def recorded(sim_org):
    """The known recorded calls, 3 and 2 days ago, written into the evidence chain."""
    day1 = (timezone.now() - dt.timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    records = recorded_calls(day1)
    evidence_append(organization=sim_org, records=records)
    return records


@pytest.fixture
def member_client(client, sim_org):
    def _as(role):
        membership = MembershipFactory(organization=sim_org, role=role)
        client.force_login(membership.user)
        client.user = membership.user
        return client

    return _as


@pytest.fixture
def author(member_client):
    return member_client(Role.POLICY_AUTHOR)


# --- policy changes: a real git repository whose live branch holds BASE_POLICY ------------------------------
@pytest.fixture
def git_workspace(tmp_path, settings):
    from tests.policies.conftest import Workspace

    settings.CORDUM_GIT_CACHE_DIR = tmp_path / "git-cache"
    workspace = Workspace(tmp_path)
    workspace.commit(BASE_POLICY, "Baseline policy")
    return workspace


@pytest.fixture
def git_repository(sim_org, git_workspace):
    """The organisation's policy repository, synced once: BASE_POLICY is live."""
    from cordum.policies import services as policy_services

    policy_services.signing_key_create(organization=sim_org)
    repository, _secret = policy_services.repository_create(
        organization=sim_org, actor=None, name="policies", url=str(git_workspace.remote_path),
        webhook_secret="s3cret-hook")
    policy_services.sync_repository(repository=repository)
    return repository
