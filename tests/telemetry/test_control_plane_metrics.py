"""The control plane's Prometheus /metrics: closed unless a token or client networks are configured, and the
numbers come from the database (approvals, evidence chains, staged uploads, the fleet's heartbeats), so every
web worker answers a scrape alike. Data is made through the real APIs."""

import datetime as dt
import os
import subprocess
import sys

import pytest
from django.test import Client
from django.utils import timezone

from cordum.approvals import services as approval_services
from cordum.decisions.models import IngestBatch
from tests.approvals.conftest import api_client, fast_password_hasher, setup  # noqa: F401  (fixtures)
from tests.decisions.conftest import make_decision

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-0123456789abcdef"


def samples(response) -> dict[str, float]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    out = {}
    for line in response.content.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_are_off_until_a_token_or_network_is_configured(settings):
    settings.CORDUM_METRICS_TOKEN, settings.CORDUM_METRICS_ALLOW_NETWORKS = "", []
    response = Client().get("/metrics")
    assert response.status_code == 403
    assert "CORDUM_METRICS_TOKEN" in response.json()["message"]


def test_a_scraper_needs_the_token(settings):
    settings.CORDUM_METRICS_TOKEN, settings.CORDUM_METRICS_ALLOW_NETWORKS = TOKEN, []
    missing = Client().get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def test_a_scraper_from_an_allowed_network_needs_no_token(settings):
    settings.CORDUM_METRICS_TOKEN, settings.CORDUM_METRICS_ALLOW_NETWORKS = "", ["10.20.0.0/16"]
    assert Client(REMOTE_ADDR="10.20.3.4").get("/metrics").status_code == 200
    outside = Client(REMOTE_ADDR="192.0.2.7").get("/metrics")
    assert outside.status_code == 403 and "CORDUM_METRICS_ALLOW_NETWORKS" in outside.json()["message"]
    # forwarded headers are not trusted: the peer address decides
    assert Client(REMOTE_ADDR="192.0.2.7").get("/metrics", HTTP_X_FORWARDED_FOR="10.20.3.4").status_code == 403


def test_a_malformed_allowed_network_stops_start_up_naming_it():
    env = {**os.environ, "CORDUM_METRICS_ALLOW_NETWORKS": "10.0.0.0/8, 10.300.0.0/16"}
    done = subprocess.run([sys.executable, "-c", "import cordum.settings"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "10.300.0.0/16" in done.stderr


def test_approvals_ingestion_and_fleet_are_scraped_from_the_database(setup, settings, celery_eager,  # noqa: F811
                                                                    django_capture_on_commit_callbacks):
    settings.CORDUM_METRICS_TOKEN, settings.CORDUM_METRICS_ALLOW_NETWORKS = TOKEN, []
    org = setup["org"].slug
    approved, denied, waiting, expiring = (setup["open"]() for _ in range(4))
    for approval, decision in ((approved, "approve"), (denied, "deny")):
        response = api_client(user=setup["alice"].user).post(
            f"/api/v1/approval-requests/{approval.pk}/decide", {"decision": decision}, format="json")
        assert response.status_code == 200, response.content
    type(expiring).objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert approval_services.approvals_expire_due(organization=setup["org"]) == 1
    with django_capture_on_commit_callbacks(execute=True):
        uploaded = setup["sidecar"].post("/api/v1/decisions", {"records": [make_decision(n=i) for i in range(3)]},
                                         format="json")
    assert uploaded.status_code == 202
    IngestBatch.objects.create(organization=setup["org"], agent=setup["agent"], payload=b"[]", record_count=7,
                               received_at=timezone.now() - dt.timedelta(minutes=5))
    IngestBatch.objects.create(organization=setup["org"], agent=setup["agent"], payload=b"[]", record_count=1,
                               error="refused by the database")
    beat = setup["sidecar"].post("/api/v1/heartbeat", {"sidecar_id": "sc-1", "hostname": "laptop", "version": "0.1.0",
                                                       "bundle_version": "v1", "spool_depth": 12,
                                                       "counters": {}, "interval_seconds": 15}, format="json")
    assert beat.status_code == 200, beat.content

    got = samples(Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))

    assert got[f'cordum_approvals_opened_total{{org="{org}"}}'] == 4
    assert got[f'cordum_approvals_decided_total{{org="{org}",state="approved"}}'] == 1
    assert got[f'cordum_approvals_decided_total{{org="{org}",state="denied"}}'] == 1
    assert got[f'cordum_approvals_decided_total{{org="{org}",state="expired"}}'] == 1
    assert got[f'cordum_approvals_pending{{org="{org}"}}'] == 1
    assert got[f'cordum_approvals_oldest_pending_seconds{{org="{org}"}}'] >= 0
    for state in ("approved", "denied"):  # decided at once: in the first bucket and every one after
        assert got[f'cordum_approvals_time_to_decision_seconds_bucket{{le="5.0",org="{org}",state="{state}"}}'] == 1
        assert got[f'cordum_approvals_time_to_decision_seconds_bucket{{le="+Inf",org="{org}",state="{state}"}}'] == 1
        assert got[f'cordum_approvals_time_to_decision_seconds_count{{org="{org}",state="{state}"}}'] == 1
    # three uploaded records, plus the outcomes the approvals wrote to the chain (approved, denied, expired)
    assert got[f'cordum_evidence_records_total{{org="{org}"}}'] == 6
    assert got[f'cordum_evidence_last_recorded_timestamp_seconds{{org="{org}"}}'] > 0
    assert got[f'cordum_ingest_batches_pending{{org="{org}"}}'] == 1
    assert got[f'cordum_ingest_records_pending{{org="{org}"}}'] == 7
    assert got[f'cordum_ingest_oldest_pending_seconds{{org="{org}"}}'] >= 300
    assert got[f'cordum_ingest_batches_quarantined{{org="{org}"}}'] == 1
    assert got[f'cordum_fleet_sidecars{{org="{org}",state="reporting"}}'] == 1
    assert got[f'cordum_fleet_spool_depth{{org="{org}"}}'] == 12
