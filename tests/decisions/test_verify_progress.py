"""Verifying the audit chain from the explorer runs as a job whose page shows progress and the verdict."""

import pytest
from django.test import Client

from cordum.decisions import services
from cordum.decisions.models import ChainVerification
from tests.decisions.conftest import make_decision

pytestmark = pytest.mark.django_db


def test_verifying_the_chain_shows_progress_then_the_verdict(org_setup, celery_eager,
                                                            django_capture_on_commit_callbacks):
    services.evidence_append(organization=org_setup["org"], agent=org_setup["pay_agent"],
                             records=[make_decision(n=i) for i in range(12)])
    client = Client()
    client.force_login(org_setup["auditor"].user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/evidence/verify/")

    run = ChainVerification.objects.get()
    assert response.status_code == 302 and response.url == f"/evidence/verify/{run.pk}/"
    assert (run.status, run.ok, run.checked, run.total) == ("done", True, 12, 12)
    html = client.get(response.url).content.decode()
    assert "Chain verified: 12 records, every link intact." in html
    assert 'aria-valuenow="100"' in html and "hx-trigger" not in html  # finished: the page stops polling


def test_a_queued_verification_page_polls_for_progress(org_setup):
    run = ChainVerification.objects.create(organization=org_setup["org"], checked=30, total=120, status="running")
    client = Client()
    client.force_login(org_setup["auditor"].user)
    fragment = client.get(f"/evidence/verify/{run.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 1s"' in fragment and "30 of 120 records checked" in fragment
    assert 'aria-valuenow="25"' in fragment


def test_members_cannot_start_or_read_a_verification(org_setup):
    run = ChainVerification.objects.create(organization=org_setup["org"])
    client = Client()
    client.force_login(org_setup["member"].user)
    assert client.post("/evidence/verify/").status_code == 403
    assert client.get(f"/evidence/verify/{run.pk}/").status_code == 403
