"""The ingestion pipeline end to end: HTTP POST -> IngestBatch -> real Celery worker -> chained rows."""

import pytest

from cordum.common import notify
from cordum.decisions.models import EvidenceRecord, IngestBatch
from tests.decisions.conftest import agent_client, make_decision, make_outcome

pytestmark = pytest.mark.django_db(transaction=True)


def test_posted_batch_is_queryable_after_worker_runs(org_setup, celery_worker):
    records = [make_decision(n=i) for i in range(25)]
    response = agent_client(org_setup["pay_token"]).post("/api/v1/decisions", {"records": records}, format="json")
    assert response.status_code == 202
    assert response.json()["accepted"] == [r["decision_id"] for r in records]
    wait_until_ingested(organization=org_setup["org"], expected=25)
    stored = EvidenceRecord.objects.filter(organization=org_setup["org"]).order_by("seq")
    assert [r.decision_id for r in stored] == [r["decision_id"] for r in records]
    first = stored[0]
    # Who made the call comes from the token, never from the body.
    assert (first.agent_name, first.team_slug) == ("claude-code-pay", "payments")
    assert [r.seq for r in stored] == list(range(1, 26))
    assert stored[1].prev_hash == stored[0].hash


def test_same_batch_posted_twice_is_stored_once(org_setup, celery_worker):
    records = [make_decision(n=i) for i in range(10)]
    outcome = make_outcome(records[0], "executed")
    client = agent_client(org_setup["pay_token"])
    for _ in range(2):
        response = client.post("/api/v1/decisions", {"records": [*records, outcome]}, format="json")
        assert response.status_code == 202
        assert response.json()["accepted"][-1] == f"{records[0]['decision_id']}:executed"
    wait_until_ingested(organization=org_setup["org"], expected=11)
    assert EvidenceRecord.objects.filter(organization=org_setup["org"]).count() == 11
    assert EvidenceRecord.objects.filter(decision_id=records[0]["decision_id"]).count() == 2  # decision + outcome


def wait_until_ingested(*, organization, expected: int, timeout: float = 30):
    """Block until the queue is drained: the writer publishes on the org's channel after each commit."""
    drained = notify.wait_for(f"evidence:{organization.pk}", timeout, lambda: not IngestBatch.objects.exists())
    assert drained, "the worker did not drain the queue"
    assert EvidenceRecord.objects.count() == expected


def test_background_export_job_reports_progress_and_matches_the_explorer_count(org_setup, celery_worker, settings,
                                                                            tmp_path):
    from django.test import Client

    from cordum.decisions import services
    from cordum.decisions.models import ExportJob

    settings.STATE_DIR = tmp_path
    records = [make_decision(n=i, decision="deny" if i % 4 == 0 else "allow") for i in range(4100)]
    services.evidence_append(organization=org_setup["org"], records=records, agent=org_setup["pay_agent"])
    client = Client()
    client.force_login(org_setup["auditor"].user)
    page = client.get("/evidence/?decision=allow").content.decode()
    count = int(page.split('id="evidence-count">')[1].split("<")[0])
    response = client.post("/evidence/exports/", {"decision": "allow", "format": "csv"})
    job = ExportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/evidence/exports/{job.pk}/"
    finished = notify.wait_for(f"evidence-export:{job.pk}", 60,
                               lambda: ExportJob.objects.filter(pk=job.pk, status__in=["done", "failed"]).exists())
    assert finished
    job.refresh_from_db()
    assert (job.status, job.total, job.done, job.percent) == ("done", count, count, 100)
    progress = client.get(f"/evidence/exports/{job.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in progress and "Download" in progress
    body = b"".join(client.get(f"/evidence/exports/{job.pk}/download/").streaming_content).decode()
    assert len(body.strip().splitlines()) == count + 1  # header + rows
