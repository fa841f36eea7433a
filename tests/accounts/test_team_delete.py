"""Deleting a team that agents belong to or evidence names is refused: its members would lose its history."""

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from cordum.accounts.models import AdminAuditLog, Agent, Team
from cordum.decisions.selectors import evidence_visible
from cordum.decisions.services import evidence_append
from tests.decisions.conftest import make_decision
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory, agent_with_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def payments():
    org = OrganizationFactory()
    team = TeamFactory(organization=org, name="Payments", slug="payments")
    agent, _ = agent_with_token(organization=org, name="claude-code-mo", team=team)
    evidence_append(organization=org, records=[make_decision(n=1)], agent=agent)
    member = MembershipFactory(organization=org, role=Role.MEMBER)
    member.teams.set([team])
    admin = MembershipFactory(organization=org, role=Role.ADMIN)
    return {"org": org, "team": team, "agent": agent, "member": member, "admin": admin}


def test_a_team_with_agents_is_not_deleted_and_the_page_says_why(client, payments):
    client.force_login(payments["admin"].user)
    response = client.post(reverse("accounts:team_delete", args=[payments["team"].pk]), follow=True)
    assert Team.objects.filter(pk=payments["team"].pk).exists()
    html = response.content.decode()
    assert "Team Payments cannot be deleted: 1 agent(s) belong to it and evidence records name it" in html
    assert evidence_visible(membership=payments["member"]).count() == 1  # the member still reads the history
    assert not AdminAuditLog.objects.filter(object_type="Team", action="delete").exists()


def test_the_api_answers_409_while_evidence_names_the_team(client, payments):
    other = TeamFactory(organization=payments["org"], name="Web", slug="web")
    Agent.objects.filter(pk=payments["agent"].pk).update(team=other)  # no agent left, the history remains
    client.force_login(payments["admin"].user)
    response = client.delete(f"/api/v1/teams/{payments['team'].pk}/")
    assert response.status_code == 409
    assert "evidence records name it" in response.json()["message"]
    assert Team.objects.filter(pk=payments["team"].pk).exists()


def test_a_team_without_agents_or_evidence_is_deleted(client, payments):
    empty = TeamFactory(organization=payments["org"], name="Data", slug="data")
    client.force_login(payments["admin"].user)
    assert client.delete(f"/api/v1/teams/{empty.pk}/").status_code == 204
    assert not Team.objects.filter(pk=empty.pk).exists()


def test_a_team_name_with_nothing_to_make_a_slug_of_is_refused_naming_the_field(db):
    from cordum.accounts.services import team_create
    from cordum.common.errors import CordumError
    from tests.factories import OrganizationFactory

    with pytest.raises(CordumError) as refused:
        team_create(organization=OrganizationFactory(), actor=None, name="支払い")
    assert refused.value.extra == {"field": "name"} and "letter or digit" in refused.value.message
