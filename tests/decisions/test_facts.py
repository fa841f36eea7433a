"""Evidence `facts`: what the sidecar kept from the agent (secrets masked in a tool result: kinds and counts) is
stored, hashed into the chain, and exported to SIEMs; anything else under that name is refused."""

import pytest
from rest_framework.test import APIClient

from cordum.decisions.audit import verify_chain
from cordum.decisions.models import EvidenceRecord
from tests.decisions.conftest import agent_client, make_decision, make_outcome

pytestmark = pytest.mark.django_db


def _post(org_setup, records):
    return agent_client(org_setup["pay_token"]).post("/api/v1/decisions", {"records": records}, format="json")


def test_masked_result_facts_are_stored_chained_and_exported(org_setup, celery_eager,
                                                             django_capture_on_commit_callbacks):
    decision = make_decision(outcome="executed", facts={"masked": {"AWS Access Key": 1, "Private Key": 1}})
    outcome = make_outcome(make_decision(), "executed", facts={"masked": {"GitHub Token": 2}, "withheld": True})
    with django_capture_on_commit_callbacks(execute=True):
        assert _post(org_setup, [decision, outcome]).status_code == 202

    stored = EvidenceRecord.objects.get(decision_id=decision["decision_id"])
    assert stored.facts == '{"masked":{"AWS Access Key":1,"Private Key":1}}'
    assert verify_chain(organization_id=org_setup["org"].pk).ok
    auditor = APIClient()
    auditor.force_authenticate(org_setup["auditor"].user)
    exported = {r["decision_id"]: r["facts"] for r in auditor.get("/api/v1/evidence").json()["records"]}
    assert exported[decision["decision_id"]] == {"masked": {"AWS Access Key": 1, "Private Key": 1}}
    assert {"masked": {"GitHub Token": 2}, "withheld": True} in exported.values()


@pytest.mark.parametrize(("facts", "field"), [
    ("masked", "records[0].facts"),
    ({"masked": {"AWS Access Key": "AKIA..."}}, "records[0].facts.masked"),
    ({"masked": {"x": 0}}, "records[0].facts.masked"),
    ({"secret": "AKIAIOSFODNN7EXAMPLE"}, "records[0].facts.secret"),
    ({"withheld": "yes"}, "records[0].facts.withheld"),
])
def test_anything_else_under_facts_is_refused_naming_the_field(org_setup, facts, field):
    response = _post(org_setup, [make_decision(facts=facts)])
    assert response.status_code == 400
    assert field in response.json()["message"]


def test_an_agent_cannot_close_another_agents_calls(org_setup, celery_eager, django_capture_on_commit_callbacks):
    decision = make_decision()
    with django_capture_on_commit_callbacks(execute=True):
        assert _post(org_setup, [decision]).status_code == 202  # recorded by the payments agent
    forged = agent_client(org_setup["web_token"]).post(
        "/api/v1/decisions", {"records": [make_outcome(decision, "executed")]}, format="json")
    assert forged.status_code == 403
    assert "records[0].decision_id" in forged.json()["message"] and "another agent" in forged.json()["message"]
    with django_capture_on_commit_callbacks(execute=True):
        assert _post(org_setup, [make_outcome(decision, "executed")]).status_code == 202  # its own agent may
    assert EvidenceRecord.objects.filter(decision_id=decision["decision_id"], record_type="outcome").count() == 1


def test_an_outcome_sent_while_another_agents_decision_is_still_staged_is_never_chained(org_setup):
    """The upload check sees only chained decisions; the writer (holding the chain head) catches the rest."""
    from cordum.decisions.services import evidence_ingest_pending

    decision = make_decision()
    assert _post(org_setup, [decision]).status_code == 202  # staged, not yet written (no commit hooks run)
    forged = agent_client(org_setup["web_token"]).post(
        "/api/v1/decisions", {"records": [make_outcome(decision, "executed")]}, format="json")
    assert forged.status_code == 202  # nothing chained yet to check it against
    own = make_outcome(make_decision(), "executed")
    assert agent_client(org_setup["web_token"]).post("/api/v1/decisions", {"records": [own]},
                                                     format="json").status_code == 202
    evidence_ingest_pending(organization_id=org_setup["org"].pk)
    assert EvidenceRecord.objects.filter(decision_id=decision["decision_id"], record_type="decision").count() == 1
    assert not EvidenceRecord.objects.filter(decision_id=decision["decision_id"], record_type="outcome").exists()
    assert EvidenceRecord.objects.filter(decision_id=own["decision_id"], record_type="outcome").count() == 1
    assert verify_chain(organization_id=org_setup["org"].pk).ok


def test_session_flow_facts_are_stored_and_exported_with_the_earlier_call_that_set_the_label(
        org_setup, celery_eager, django_capture_on_commit_callbacks):
    read = make_decision(outcome="executed", facts={"labels": ["secret-read"]})
    set_by = {"decision_id": read["decision_id"], "server": "fs", "tool": "read_text_file", "target": "/p/.env",
              "timestamp": read["timestamp"]}
    fetch = make_decision(decision="deny", outcome="blocked", facts={
        "flow": {"label": "secret-read", "rule": "deny-egress-after-secret-read", "set_by": set_by}})
    with django_capture_on_commit_callbacks(execute=True):
        assert _post(org_setup, [read, fetch]).status_code == 202
    assert verify_chain(organization_id=org_setup["org"].pk).ok
    auditor = APIClient()
    auditor.force_authenticate(org_setup["auditor"].user)
    exported = {r["decision_id"]: r["facts"] for r in auditor.get("/api/v1/evidence").json()["records"]}
    assert exported[read["decision_id"]] == {"labels": ["secret-read"]}
    assert exported[fetch["decision_id"]]["flow"]["set_by"]["decision_id"] == read["decision_id"]

    # the evidence page of the denial explains it with a link to the read that set the label
    from django.test import Client

    ui = Client()
    ui.force_login(org_setup["auditor"].user)
    read_row = EvidenceRecord.objects.get(decision_id=read["decision_id"], record_type="decision")
    fetch_row = EvidenceRecord.objects.get(decision_id=fetch["decision_id"], record_type="decision")
    html = ui.get(f"/evidence/records/{fetch_row.pk}/").content.decode()
    assert "Decided by a session data-flow rule" in html and "deny-egress-after-secret-read" in html
    assert f'href="/evidence/records/{read_row.pk}/"' in html and "fs.read_text_file" in html
    assert "session data-flow rule" not in ui.get(f"/evidence/records/{read_row.pk}/").content.decode()
    session = ui.get(f"/evidence/sessions/{read['session_id']}/").content.decode()
    assert "sets secret-read" in session


@pytest.mark.parametrize(("facts", "field"), [
    ({"labels": "secret-read"}, "records[0].facts.labels"),
    ({"labels": []}, "records[0].facts.labels"),
    ({"flow": {"label": "x"}}, "records[0].facts.flow"),
    ({"flow": {"label": "x", "rule": "r", "set_by": {"password": "hunter2"}}}, "records[0].facts.flow"),
])
def test_malformed_flow_facts_are_refused_naming_the_field(org_setup, facts, field):
    response = _post(org_setup, [make_decision(facts=facts)])
    assert response.status_code == 400
    assert field in response.json()["message"]
