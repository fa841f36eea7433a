"""Bad input named in the hardening issue: each answer is a 4xx whose message names the field, never a 5xx."""

import uuid

import pytest
from rest_framework.test import APIClient

from cordum.accounts import services as account_services
from tests.decisions.conftest import agent_client, make_decision, make_outcome, org_setup  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(org_setup):  # noqa: F811
    _token, plaintext = account_services.user_token_create(user=org_setup["admin"].user, name="api")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


@pytest.fixture
def agent(org_setup):  # noqa: F811
    return agent_client(org_setup["pay_token"])


@pytest.mark.parametrize("path", [
    "/api/v1/approvals/000000000000000000000000000000000000",
    "/api/v1/approvals/------------------------------------/cancel",
    "/api/v1/approvals/g0000000-0000-0000-0000-000000000000",
])
def test_a_non_uuid_approval_id_is_not_found(agent, path):
    response = agent.get(path) if "cancel" not in path else agent.post(path)
    assert response.status_code == 404


@pytest.mark.parametrize("path", [
    "/api/v1/approval-requests/000000000000000000000000000000000000/",
    "/api/v1/agents/abc/rotate/", "/api/v1/agents/%F3%96%B1%94/", "/api/v1/policy-versions/1.5/",
    "/api/v1/repositories/99999999999999999999999/", "/api/v1/agents/99999999999999999999999/",
    "/api/v1/signing-keys/99999999999999999999999/",
])
def test_a_malformed_or_out_of_range_id_in_a_person_facing_path_is_not_found(admin_client, path):
    response = admin_client.post(path) if path.endswith("rotate/") else admin_client.get(path)
    assert response.status_code == 404


@pytest.mark.parametrize("query, field", [
    ("repository=abc", "repository"), ("repository=99999999999999999999", "repository"),
    ("valid=perhaps", "valid"), ("branch=a%00b", "branch"),
])
def test_bad_policy_version_filters_are_a_400_naming_the_filter(admin_client, query, field):
    response = admin_client.get(f"/api/v1/policy-versions/?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()["message"]


@pytest.mark.parametrize("query", ["limit=999999999999999999999999", "limit=-5", "offset=99999999999999999999999"])
def test_a_huge_limit_or_offset_is_clamped_or_refused_never_a_server_error(admin_client, query):
    for path in ("/api/v1/policy-versions/", "/api/v1/agents/", "/api/v1/evidence"):
        response = admin_client.get(f"{path}?{query}")
        assert response.status_code in (200, 400), (path, response.status_code, response.content)
        if response.status_code == 400:
            assert query.split("=")[0] in response.json()["message"]


@pytest.mark.parametrize("query, field", [
    ("start=99999-01-01T00:00:00", "start"), ("end=0000-01-01", "end"), ("start=9999-12-31T23:59:59%2B00:00", None),
])
def test_timestamp_filters_out_of_range_are_a_400_naming_the_field(admin_client, query, field):
    response = admin_client.get(f"/api/v1/evidence?{query}")
    if field is None:
        assert response.status_code == 200
    else:
        assert response.status_code == 400 and field in response.json()["message"]


@pytest.mark.parametrize("field, value", [
    ("decision", ["allow"]), ("decision", {"x": 1}), ("mode", ["enforce"]), ("mode", {"a": "b"}),
    ("timestamp", "99999-01-01T00:00:00Z"), ("timestamp", "0001-01-01T00:00:00+01:00"), ("timestamp", 1e300),
    ("latency_us", 10**30), ("decision_id", ["a"]), ("decision_id", "x" * 65), ("outcome", ["executed"]),
])
def test_a_decision_record_with_a_malformed_field_is_a_400_naming_it(agent, field, value):
    record = make_decision(**{field: value})
    response = agent.post("/api/v1/decisions", {"records": [record]}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["message"]


@pytest.mark.parametrize("value", [["executed"], {"a": 1}, 5])
def test_an_outcome_record_whose_outcome_is_not_a_string_is_a_400_naming_it(agent, value):
    record = make_outcome(make_decision(), outcome=value)
    response = agent.post("/api/v1/decisions", {"records": [record]}, format="json")
    assert response.status_code == 400, response.content
    assert "outcome" in response.json()["message"]


def test_an_approval_whose_fields_are_lists_is_a_400(agent):
    response = agent.post("/api/v1/approvals", {"decision_id": [str(uuid.uuid4())], "tool": {"a": 1}}, format="json")
    assert response.status_code == 400
