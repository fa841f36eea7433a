"""The role matrix: each role against each admin page and API endpoint, allowed or 403."""

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory, agent_with_token

ADMIN_PAGES = [
    ("accounts:team_list", {}),
    ("accounts:team_create", {}),
    ("accounts:membership_list", {}),
    ("accounts:membership_create", {}),
    ("accounts:agent_list", {}),
    ("accounts:agent_create", {}),
    ("accounts:sso_settings", {}),
]
API_ENDPOINTS = ["/api/v1/teams/", "/api/v1/memberships/", "/api/v1/agents/"]
AUDIT_LOG_ROLES = {Role.ADMIN, Role.AUDITOR}


@pytest.fixture
def org():
    return OrganizationFactory()


def _client_for(client, org, role):
    membership = MembershipFactory(organization=org, role=role)
    client.force_login(membership.user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("role", Role.values)
@pytest.mark.parametrize(("url_name", "kwargs"), ADMIN_PAGES)
def test_admin_pages_are_for_admins_only(client, org, role, url_name, kwargs):
    _client_for(client, org, role)
    response = client.get(reverse(url_name, kwargs=kwargs))
    assert response.status_code == (200 if role == Role.ADMIN else 403)


@pytest.mark.django_db
@pytest.mark.parametrize("role", Role.values)
def test_admin_audit_log_is_for_admins_and_auditors(client, org, role):
    _client_for(client, org, role)
    response = client.get(reverse("accounts:audit_log"))
    assert response.status_code == (200 if role in AUDIT_LOG_ROLES else 403)


@pytest.mark.django_db
@pytest.mark.parametrize("role", Role.values)
@pytest.mark.parametrize("url", API_ENDPOINTS)
def test_api_endpoints_follow_the_same_matrix(client, org, role, url):
    _client_for(client, org, role)
    assert client.get(url).status_code == (200 if role == Role.ADMIN else 403)


@pytest.mark.django_db
@pytest.mark.parametrize("role", [r for r in Role.values if r != Role.ADMIN])
def test_non_admins_cannot_change_anything_through_the_api(client, org, role):
    team = TeamFactory(organization=org)
    agent, _ = agent_with_token(organization=org, team=team)
    _client_for(client, org, role)
    assert client.post("/api/v1/teams/", {"name": "x"}, content_type="application/json").status_code == 403
    assert client.delete(f"/api/v1/teams/{team.pk}/").status_code == 403
    assert client.post(f"/api/v1/agents/{agent.pk}/rotate/").status_code == 403
    assert client.post(reverse("accounts:agent_revoke", args=[agent.pk])).status_code == 403


@pytest.mark.django_db
def test_dashboard_needs_login(client):
    response = client.get(reverse("accounts:dashboard"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


@pytest.mark.django_db
def test_admin_of_one_org_cannot_touch_another_orgs_objects(client, org):
    other_team = TeamFactory()  # another organisation
    _client_for(client, org, Role.ADMIN)
    assert client.get(f"/api/v1/teams/{other_team.pk}/").status_code == 404
    assert client.post(reverse("accounts:team_delete", args=[other_team.pk])).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "titles"),
    [
        (Role.ADMIN, {"Live policy", "Pending approvals", "Tool calls, last 24 h", "Fleet"}),
        (Role.REVIEWER, {"Live policy", "Pending approvals", "Tool calls, last 24 h"}),
        (Role.AUDITOR, {"Live policy", "Tool calls, last 24 h", "Fleet"}),
        (Role.MEMBER, {"Tool calls, last 24 h"}),
    ],
)
def test_dashboard_shows_each_role_only_the_panels_it_may_read(client, org, role, titles):
    _client_for(client, org, role)
    response = client.get(reverse("accounts:dashboard"))
    assert {p["title"] for p in response.context["panels"]} == titles


@pytest.mark.django_db
@pytest.mark.parametrize("url", [*API_ENDPOINTS, "/api/v1/evidence", "/api/v1/repositories/",
                                 "/api/v1/approval-requests", "/api/v1/simulations/"])
def test_the_people_api_without_credentials_is_401_and_says_how_to_authenticate(client, url):
    response = client.get(url)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"


@pytest.mark.django_db
def test_an_admin_cannot_pull_in_and_read_a_person_from_another_organisation(client):
    from tests.factories import UserFactory

    org_a, org_b = OrganizationFactory(), OrganizationFactory()
    ceo = MembershipFactory(organization=org_a, role=Role.MEMBER,
                            user=UserFactory(username="ceo-a", email="ceo@a-corp.example")).user
    admin_b = MembershipFactory(organization=org_b, role=Role.ADMIN).user
    client.force_login(admin_b)

    response = client.post("/api/v1/memberships/", {"username": "ceo-a", "role": "member"},
                           content_type="application/json")

    assert response.status_code == 400 and "taken by someone outside" in response.json()["message"]
    assert "ceo@a-corp.example" not in response.content.decode()
    assert not ceo.memberships.filter(organization=org_b).exists()
    assert client.post("/api/v1/memberships/", {"username": "new-person", "role": "member"},
                       content_type="application/json").status_code == 201  # a new username is simply created
    from cordum.accounts.services import membership_create

    MembershipFactory(organization=org_a, role=Role.ADMIN, user=admin_b)  # an admin of both may add them
    assert membership_create(organization=org_b, actor=admin_b, username="ceo-a", role=Role.MEMBER).user == ceo
