"""POST /api/v1/simulations and GET /api/v1/simulations/{id}: RBAC, validation errors, the report."""

import pytest

from cordum.accounts.choices import Role
from cordum.simulation.models import Simulation
from tests.simulation.data import EXPECTED_MATRIX, INVALID_POLICY

pytestmark = pytest.mark.django_db

RUNNERS = {Role.ADMIN, Role.POLICY_AUTHOR}
READERS = {Role.ADMIN, Role.POLICY_AUTHOR, Role.AUDITOR}


@pytest.fixture
def eager(celery_eager, django_capture_on_commit_callbacks):
    def post(client, body):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post("/api/v1/simulations", body, content_type="application/json")

    return post


def test_an_author_starts_a_simulation_and_ci_reads_the_report_and_gate(author, versions, recorded, eager):
    response = eager(author, {"candidate_commit": "b" * 12, "days": 7, "fail_if_newly_denied_over": 0})
    assert response.status_code == 202, response.json()
    sim_id = response.json()["id"]
    body = author.get(f"/api/v1/simulations/{sim_id}").json()
    assert body["status"] == "completed"
    assert body["progress"] == 1.0
    assert body["report"]["matrix"] == EXPECTED_MATRIX
    assert body["gate"] == {"fail_if_newly_denied_over": 0, "newly_denied": 5, "passed": False}
    assert body["candidate"]["commit"] == "b" * 40
    assert body["baseline_version"] == versions["live"].version
    assert body["url"].endswith(f"/simulations/{sim_id}/")


@pytest.mark.parametrize("role", Role.values)
def test_only_authors_and_admins_run_simulations(member_client, versions, role, eager):
    client = member_client(role)
    response = eager(client, {"candidate_version_id": versions["candidate"].pk})
    assert response.status_code == (202 if role in RUNNERS else 403)


@pytest.mark.parametrize("role", Role.values)
def test_auditors_authors_and_admins_read_reports_members_get_403(member_client, sim_org, versions, role):
    from cordum.simulation import services

    simulation = services.simulation_create(organization=sim_org, user=None, enqueue=False,
                                            candidate_version_id=versions["candidate"].pk)
    client = member_client(role)
    assert client.get(f"/api/v1/simulations/{simulation.pk}").status_code == (200 if role in READERS else 403)
    assert client.get("/api/v1/simulations").status_code == (200 if role in READERS else 403)


def test_an_invalid_candidate_is_a_400_listing_its_errors(author, versions, eager):
    response = eager(author, {"policy_yaml": INVALID_POLICY})
    assert response.status_code == 400
    body = response.json()
    assert body["message"].startswith("The candidate policy is invalid")
    assert any(e.startswith("safety.yaml:3:") for e in body["extra"]["errors"])
    response = eager(author, {"candidate_version_id": versions["invalid"].pk})
    assert response.status_code == 400
    assert body["extra"]["errors"]
    assert not Simulation.objects.exists()


def test_bad_input_names_the_field(author, versions, eager):
    response = eager(author, {"candidate_version_id": versions["candidate"].pk, "days": 0})
    assert response.status_code == 400
    assert "days" in response.json()["message"]
    response = eager(author, {"days": 7})
    assert response.status_code == 400
    assert "exactly one" in response.json()["message"]


def test_another_organisations_simulation_is_not_found(author, versions):
    from cordum.simulation import services
    from tests.factories import OrganizationFactory

    other = OrganizationFactory()
    simulation = services.simulation_create(organization=other, user=None, enqueue=False,
                                            policy_yaml=versions["candidate"].source_text)
    assert author.get(f"/api/v1/simulations/{simulation.pk}").status_code == 404


@pytest.mark.parametrize(("field", "value", "message"), [
    ("team", "paymnts", "Invalid input: team: no team 'paymnts' in this organisation."),
    ("agent", "claude-code-nobody", "Invalid input: agent: no agent 'claude-code-nobody' in this organisation."),
])
def test_a_misspelt_team_or_agent_filter_is_refused_so_a_ci_gate_cannot_pass_on_nothing(
        author, versions, recorded, eager, field, value, message):
    response = eager(author, {"candidate_commit": "b" * 12, "days": 7, "fail_if_newly_denied_over": 0, field: value})
    assert response.status_code == 400
    assert response.json()["message"] == message and response.json()["extra"]["field"] == field
    assert not Simulation.objects.exists()
