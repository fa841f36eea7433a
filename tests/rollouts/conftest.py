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
