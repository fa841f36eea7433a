"""An admin creating an agent names the person it works for; that owner, not the admin, may not approve its calls."""

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from cordum.accounts.models import Agent
from cordum.approvals.models import ApprovalRequest
from cordum.approvals.selectors import approval_reviewer_refusal
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def org_people():
    org = OrganizationFactory()
    return {"org": org, "admin": MembershipFactory(organization=org, role=Role.ADMIN),
            "dana": MembershipFactory(organization=org, role=Role.REVIEWER),
            "alice": MembershipFactory(organization=org, role=Role.REVIEWER)}


def _refusal(agent, membership):
    request = ApprovalRequest(organization=agent.organization, agent=agent, reviewers=["role:reviewer"],
                              allow_self_approval=False)
    return approval_reviewer_refusal(approval=request, membership=membership)


def test_the_agent_form_sets_the_owner_who_then_may_not_approve_its_calls(client, org_people):
    client.force_login(org_people["admin"].user)
    dana = org_people["dana"]
    response = client.post(reverse("accounts:agent_create"), {"name": "claude-code-dana", "kind": "claude-code",
                                                              "environment": "dev", "owner": dana.user.pk})
    assert response.status_code == 200 and "cdm_agent_" in response.content.decode()
    agent = Agent.objects.get(name="claude-code-dana")
    assert agent.owner == dana.user
    assert "You own the agent claude-code-dana" in _refusal(agent, dana)
    assert _refusal(agent, org_people["alice"]) is None


def test_without_an_owner_the_creating_admin_owns_the_agent(client, org_people):
    client.force_login(org_people["admin"].user)
    client.post(reverse("accounts:agent_create"), {"name": "cursor-x", "kind": "cursor", "environment": "dev"})
    assert Agent.objects.get(name="cursor-x").owner == org_people["admin"].user


def test_the_api_takes_the_owner_by_username_and_names_an_unknown_one(client, org_people):
    client.force_login(org_people["admin"].user)
    dana, alice = org_people["dana"].user, org_people["alice"].user
    created = client.post("/api/v1/agents/", {"name": "devin-dana", "kind": "devin", "owner": dana.username},
                          content_type="application/json")
    assert created.status_code == 201 and created.json()["agent"]["owner"] == dana.username
    agent_id = created.json()["agent"]["id"]
    moved = client.patch(f"/api/v1/agents/{agent_id}/", {"owner": alice.username}, content_type="application/json")
    assert moved.status_code == 200 and moved.json()["owner"] == alice.username
    outsider = MembershipFactory(role=Role.MEMBER).user  # a member of another organisation
    bad = client.post("/api/v1/agents/", {"name": "x-1", "kind": "devin", "owner": outsider.username},
                      content_type="application/json")
    assert bad.status_code == 400
    assert bad.json()["message"] == f"Invalid input: owner: no member {outsider.username!r} in this organisation."
