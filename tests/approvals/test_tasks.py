"""Beat expiry and the opening notification (a real Celery worker on Redis, a real HTTP webhook)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from cordum.approvals.models import ApprovalRequest
from cordum.approvals.tasks import approvals_expire_task
from cordum.decisions.models import EvidenceRecord


@pytest.mark.django_db
def test_the_expiry_task_marks_overdue_requests_expired_and_writes_the_evidence_outcome(setup):
    overdue = setup["open"]()
    fresh = setup["open"]()
    ApprovalRequest.objects.filter(pk=overdue.pk).update(expires_at=overdue.created_at)
    assert approvals_expire_task() == 1
    overdue.refresh_from_db()
    fresh.refresh_from_db()
    assert (overdue.state, fresh.state) == ("expired", "pending")
    assert overdue.decided_at is not None
    record = EvidenceRecord.objects.get(organization=setup["org"], decision_id=overdue.decision_id)
    assert (record.record_type, record.outcome, record.reviewer) == ("outcome", "expired", "")
    assert approvals_expire_task() == 0  # idempotent


@pytest.mark.django_db
def test_an_expired_request_cannot_be_approved_late(setup):
    from cordum.approvals import services
    from cordum.common.errors import Conflict

    approval = setup["open"]()
    ApprovalRequest.objects.filter(pk=approval.pk).update(expires_at=approval.created_at)
    approval.refresh_from_db()
    with pytest.raises(Conflict, match="expired"):
        services.approval_decide(approval=approval, membership=setup["alice"], decision="approve")
    approval.refresh_from_db()
    assert approval.state == "expired"


class _Webhook(BaseHTTPRequestHandler):
    received: list = []
    arrived = threading.Event()

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
        type(self).arrived.set()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Webhook.received = []
    _Webhook.arrived = threading.Event()
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Webhook
    server.shutdown()
    server.server_close()


def test_opening_a_request_posts_a_slack_message_without_the_arguments(setup, celery_worker, webhook):
    url, hook = webhook
    org = setup["org"]
    org.notification_webhook_url = url
    org.save()
    setup["open"](arguments={"path": "deploy.env", "content": "API_KEY=sk_live_SECRET123"})
    assert hook.arrived.wait(timeout=30), "the webhook was not called"
    content_type, body = hook.received[0]
    assert content_type == "application/json"
    assert set(body) == {"text"}
    assert "claude-code-mo" in body["text"] and "file.write" in body["text"] and "approve-writes" in body["text"]
    assert "/approvals/link/" in body["text"]  # signed, single-use: see test_views
    assert "sk_live_SECRET123" not in body["text"] and "API_KEY" not in body["text"]


@pytest.mark.django_db
def test_a_failing_webhook_does_not_fail_anything(setup):
    from cordum.approvals import services

    approval = setup["open"]()
    setup["org"].notification_webhook_url = "http://127.0.0.1:9/unreachable"
    setup["org"].save()
    approval.refresh_from_db()
    assert services.approval_notify(approval=ApprovalRequest.objects.select_related("organization", "agent").get(
        pk=approval.pk)) is False
