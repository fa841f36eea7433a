"""Agent tokens are hashed and die when revoked; admin changes are audited; bad input names the field."""

import pytest
from django.urls import reverse

from cordum.accounts import services
from cordum.accounts.choices import Role
from cordum.accounts.models import AdminAuditLog, AgentToken, Team
from cordum.common.crypto import token_digest
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory, agent_with_token


@pytest.fixture
def admin_client(client):
    membership = MembershipFactory(role=Role.ADMIN)
    client.force_login(membership.user)
    client.org = membership.organization
    client.user = membership.user
    return client


def _agent_api(client, token):
    """An endpoint that only agents may call: the token is accepted or not."""
    return client.get("/api/v1/teams/", HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.django_db
def test_agent_token_is_stored_only_as_a_digest():
    agent, issued = agent_with_token(organization=OrganizationFactory())
    stored = AgentToken.objects.get(agent=agent)
    assert issued.plaintext.startswith("cdm_agent_")
    assert stored.digest == token_digest(issued.plaintext)
    row_values = [str(v) for v in AgentToken.objects.filter(pk=stored.pk).values().first().values()]
    assert not any(issued.plaintext in value for value in row_values)


@pytest.mark.django_db
def test_agent_token_authenticates_until_revoked(client):
    from rest_framework.test import APIRequestFactory

    from cordum.accounts.authentication import AgentPrincipal, TokenAuthentication

    org = OrganizationFactory()
    agent, issued = agent_with_token(organization=org)
    auth = TokenAuthentication()
    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {issued.plaintext}")
    assert agent.last_seen_at is None
    principal, _ = auth.authenticate(request)
    assert isinstance(principal, AgentPrincipal) and principal.agent == agent
    agent.refresh_from_db()
    assert agent.last_seen_at is not None  # seen by any authenticated call, not only sidecar heartbeats
    # agents are not people: the admin API refuses them
    assert _agent_api(client, issued.plaintext).status_code == 403

    services.agent_revoke(agent=agent, actor=None)
    assert _agent_api(client, issued.plaintext).status_code == 401


@pytest.mark.django_db
def test_rotation_revokes_the_old_token(client):
    agent, first = agent_with_token(organization=OrganizationFactory())
    second = services.agent_token_rotate(agent=agent, actor=None)
    assert _agent_api(client, first.plaintext).status_code == 401
    assert _agent_api(client, second.plaintext).status_code == 403  # authenticated, not allowed here


@pytest.mark.django_db
def test_unknown_token_is_refused(client):
    assert _agent_api(client, "cdm_agent_nope").status_code == 401


@pytest.mark.django_db
def test_admin_audit_log_records_create_edit_delete(admin_client):
    org = admin_client.org
    admin_client.post(reverse("accounts:team_create"), {"name": "Payments", "description": "money"})
    team = Team.objects.get(organization=org, slug="payments")
    admin_client.post(reverse("accounts:team_update", args=[team.pk]), {"name": "Payments", "description": "cash"})
    admin_client.post(reverse("accounts:team_delete", args=[team.pk]))
    entries = list(AdminAuditLog.objects.filter(organization=org, object_type="Team").order_by("created_at", "id"))
    assert [e.action for e in entries] == ["create", "update", "delete"]
    assert entries[1].before["description"] == "money" and entries[1].after["description"] == "cash"
    assert all(e.actor_name == admin_client.user.email for e in entries)


@pytest.mark.django_db
def test_agent_create_rotate_revoke_are_audited_without_the_token(admin_client):
    response = admin_client.post(
        "/api/v1/agents/", {"name": "claude-code-x", "kind": "claude-code"}, content_type="application/json"
    )
    assert response.status_code == 201
    token = response.json()["token"]
    agent_id = response.json()["agent"]["id"]
    admin_client.post(f"/api/v1/agents/{agent_id}/rotate/")
    admin_client.post(f"/api/v1/agents/{agent_id}/revoke/")
    entries = AdminAuditLog.objects.filter(organization=admin_client.org, object_type="Agent")
    assert sorted(e.action for e in entries) == ["create", "revoke", "rotate"]
    assert all(token not in str(e.before) + str(e.after) for e in entries)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/agents/", {"kind": "claude-code"}, "name"),
        ("/api/v1/agents/", {"name": "ok-name", "kind": "robot"}, "kind"),
        ("/api/v1/agents/", {"name": "ok-name", "kind": "cursor", "team": "nope"}, "team"),
        ("/api/v1/teams/", {"description": "no name"}, "name"),
        ("/api/v1/memberships/", {"username": "bob", "role": "overlord"}, "role"),
    ],
)
def test_bad_api_input_gets_400_naming_the_field(admin_client, url, body, field):
    response = admin_client.post(url, body, content_type="application/json")
    assert response.status_code == 400
    assert f"{field}:" in response.json()["message"]


@pytest.mark.django_db
def test_malformed_json_gets_400(admin_client):
    response = admin_client.post("/api/v1/teams/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["message"]


@pytest.mark.django_db
def test_agent_list_filters_by_team_kind_environment_and_state(admin_client):
    org = admin_client.org
    team = TeamFactory(organization=org, slug="payments")
    agent_with_token(organization=org, name="a-claude", team=team, kind="claude-code")
    agent_with_token(organization=org, name="a-cursor", kind="cursor", environment="prod")
    revoked, _ = agent_with_token(organization=org, name="a-devin", kind="devin")
    services.agent_revoke(agent=revoked, actor=None)

    def names(query):
        return [a["name"] for a in admin_client.get(f"/api/v1/agents/?{query}").json()["results"]]

    assert names("team=payments") == ["a-claude"]
    assert names("kind=cursor") == ["a-cursor"]
    assert names("environment=prod") == ["a-cursor"]
    assert names("active=false") == ["a-devin"]
    page = admin_client.get(reverse("accounts:agent_list") + "?kind=cursor", HTTP_HX_REQUEST="true")
    assert b"a-cursor" in page.content and b"a-claude" not in page.content and b"<html" not in page.content


@pytest.mark.django_db
def test_personal_token_acts_with_the_users_role_until_revoked(client):
    from cordum.accounts.models import UserToken

    membership = MembershipFactory(role=Role.ADMIN)
    client.force_login(membership.user)
    page = client.post(reverse("accounts:user_tokens"), {"name": "ci"})
    token = page.context["token"]
    client.logout()
    assert client.get("/api/v1/teams/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    stored = UserToken.objects.get(user=membership.user)
    assert stored.digest == token_digest(token)
    client.force_login(membership.user)
    client.post(reverse("accounts:user_token_revoke", args=[stored.pk]))
    client.logout()
    assert client.get("/api/v1/teams/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
