"""Who reads which evidence: one rule (Membership.team_scope) for the explorer, exports and the review queue."""

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from cordum.decisions.selectors import evidence_visible
from cordum.decisions.services import evidence_batch_enqueue
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory, agent_with_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def org_with_calls(celery_eager, django_capture_on_commit_callbacks):
    from tests.decisions.conftest import make_decision

    org = OrganizationFactory()
    payments = TeamFactory(organization=org, name="Payments", slug="payments")
    web = TeamFactory(organization=org, name="Web", slug="web")
    mo = MembershipFactory(organization=org, role=Role.MEMBER)
    mo.teams.set([payments])
    mine, _ = agent_with_token(organization=org, name="cursor-mo", team=web, owner=mo.user)
    other, _ = agent_with_token(organization=org, name="cursor-web", team=web)
    pay, _ = agent_with_token(organization=org, name="claude-pay", team=payments)
    with django_capture_on_commit_callbacks(execute=True):
        for agent in (mine, other, pay):
            evidence_batch_enqueue(agent=agent, records=[make_decision()])
    return org, mo


def _agents(qs) -> set[str]:
    return set(qs.values_list("agent_name", flat=True))


def test_a_member_sees_his_own_agents_evidence_even_in_another_team(org_with_calls, client):
    org, mo = org_with_calls
    assert _agents(evidence_visible(membership=mo)) == {"cursor-mo", "claude-pay"}
    client.force_login(mo.user)
    html = client.get(reverse("decisions:explorer")).content.decode()
    assert "cursor-mo" in html and "cursor-web" not in html


def test_a_policy_author_scoped_to_no_team_reads_every_teams_evidence(org_with_calls):
    org, _ = org_with_calls
    author = MembershipFactory(organization=org, role=Role.POLICY_AUTHOR)
    assert _agents(evidence_visible(membership=author)) == {"cursor-mo", "cursor-web", "claude-pay"}
    author.teams.set(org.teams.filter(slug="payments"))
    assert _agents(evidence_visible(membership=author)) == {"claude-pay"}


def test_a_members_dashboard_lists_his_agents_and_their_held_calls(org_with_calls, client):
    from datetime import timedelta

    from django.utils import timezone

    from cordum.accounts.models import Agent
    from cordum.approvals.models import ApprovalRequest

    org, mo = org_with_calls
    agent = Agent.objects.get(name="cursor-mo")
    ApprovalRequest.objects.create(organization=org, agent=agent, server="filesystem", tool="write_file",
                                   target="src/app.py", decision_id="d-1",
                                   expires_at=timezone.now() + timedelta(minutes=15))
    client.force_login(mo.user)
    html = client.get("/").content.decode()
    assert 'id="own-agents"' in html and "cursor-mo" in html and "?agent=cursor-mo" in html
    assert "Your agents&#x27; held calls" in html or "Your agents' held calls" in html
