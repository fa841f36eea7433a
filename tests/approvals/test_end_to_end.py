"""Done-when of the approvals issue, with real processes end to end.

An MCP client (mcp SDK, stdio) calls `write_file` through a real `cordum-sidecar` process in front of the
real `@modelcontextprotocol/server-filesystem`. The sidecar enforces the bundle the control plane (Django
live server) published from a git policy repository, holds the call, opens an approval at the live server
and long-polls it. A reviewer decides (HTML UI or API); the evidence trail shows require_approval, the
reviewer, the decision and the final side effect. Nothing waits on wall time: each step waits on an event
(the approvals/evidence notify channels or the tool result).
"""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from cordum.approvals import services as approval_services
from cordum.approvals.models import ApprovalRequest
from cordum.decisions.models import EvidenceRecord
from tests.approvals.e2e import NEW, ORIGINAL, held_call_then, outcomes, wait_for_evidence

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

def test_a_held_write_runs_once_a_reviewer_approves_it_in_the_ui(world):
    w = world()

    def approve(request):
        reviewer = Client()
        reviewer.force_login(w["alice"].user)
        queue = reviewer.get(reverse("approvals:queue")).content.decode()
        assert f'id="approval-{request.pk}"' in queue and "approve-file-writes" in queue
        response = reviewer.post(reverse("approvals:decide", args=[request.pk]),
                                 {"decision": "approve", "comment": "ship it"})
        assert response.status_code == 302

    result, request, progress = held_call_then(w, approve, expect_error=False)
    assert (w["project"] / "src" / "app.py").read_text() == NEW
    assert any("Waiting for human approval" in m for m in progress)  # the agent heard it is waiting
    request.refresh_from_db()
    assert request.state == "approved" and request.consumed_at is not None  # used exactly once
    assert request.tool == "write_file" and request.rule == "approve-file-writes"
    assert request.policy_version == w["bundle"].manifest["version"]

    rows = list(EvidenceRecord.objects.filter(organization=w["org"], decision_id=request.decision_id).order_by("seq"))
    trail = outcomes(rows)
    assert trail[0] == "decision:require_approval"
    approved = next(r for r in rows if r.record_type == "outcome" and r.outcome == "approved")
    assert (approved.reviewer, approved.comment) == ("alice@example.com", "ship it")
    executed = next(r for r in rows if r.record_type == "outcome" and r.outcome == "executed")
    assert rows[0].seq < approved.seq < executed.seq  # action -> reviewer -> final side effect, in chain order
    assert rows[0].policy_version == w["bundle"].manifest["version"]


def test_a_held_write_is_refused_when_the_reviewer_denies_it_through_the_api(world):
    w = world()

    def deny(request):
        api = APIClient()
        api.force_authenticate(w["alice"].user)
        response = api.post(f"/api/v1/approval-requests/{request.pk}/decide",
                            {"decision": "deny", "comment": "not on a Friday"}, format="json")
        assert response.status_code == 200, response.content

    result, request, _ = held_call_then(w, deny, expect_error=True)
    text = "".join(getattr(c, "text", "") for c in result.content)
    assert "Denied by alice@example.com" in text and "not on a Friday" in text
    assert (w["project"] / "src" / "app.py").read_text() == ORIGINAL  # untouched
    request.refresh_from_db()
    assert request.state == "denied" and request.consumed_at is None
    rows = wait_for_evidence(w["org"], request.decision_id,
                             lambda rows: any(r.record_type == "decision" and r.outcome == "denied" for r in rows)
                             or sum(r.outcome == "denied" for r in rows) >= 1)
    trail = outcomes(rows)
    assert trail[0] == "decision:require_approval"
    denied = next(r for r in rows if r.record_type == "outcome" and r.outcome == "denied")
    assert (denied.reviewer, denied.comment) == ("alice@example.com", "not on a Friday")
    assert not any(r.outcome == "executed" for r in rows)


def test_a_held_write_expires_when_nobody_decides(world):
    w = world(timeout="2s")

    def nobody(request):
        return None

    result, request, _ = held_call_then(w, nobody, expect_error=True)
    text = "".join(getattr(c, "text", "") for c in result.content)
    assert "denied (fail closed)" in text
    assert (w["project"] / "src" / "app.py").read_text() == ORIGINAL  # untouched
    # The server decides expiry itself (beat task / on read); run the beat's work at the deadline.
    approval_services.approvals_expire_due(now=ApprovalRequest.objects.get(pk=request.pk).expires_at)
    request.refresh_from_db()
    assert request.state == "expired" and request.reviewer_email == ""
    rows = list(EvidenceRecord.objects.filter(organization=w["org"], decision_id=request.decision_id).order_by("seq"))
    assert outcomes(rows)[0] == "decision:require_approval"
    assert any(r.record_type == "outcome" and r.outcome == "expired" for r in rows)
    assert not any(r.outcome in ("executed", "approved") for r in rows)
    # A late click is refused with a clear message.
    reviewer = Client()
    reviewer.force_login(w["alice"].user)
    page = reviewer.post(reverse("approvals:decide", args=[request.pk]), {"decision": "approve"}, follow=True)
    assert "expired before anyone decided" in page.content.decode()


def test_a_held_write_runs_when_nobody_decides_and_the_policy_says_on_timeout_allow(world):
    w = world(timeout="2s", on_timeout="allow")

    def nobody(request):
        return None

    result, request, _ = held_call_then(w, nobody, expect_error=False)  # waits for the `executed` outcome
    assert (w["project"] / "src" / "app.py").read_text() == NEW  # the write ran after the timeout
    request.refresh_from_db()
    approval_services.approvals_expire_due(now=request.expires_at)  # a no-op if a read already expired it
    request.refresh_from_db()
    assert request.on_timeout == "allow" and request.state == "expired" and request.consumed_at is None
    rows = wait_for_evidence(w["org"], request.decision_id,
                             lambda rows: any(r.outcome == "allowed_on_timeout" for r in rows)
                             and any(r.outcome == "expired" for r in rows))
    assert outcomes(rows)[0] == "decision:require_approval"
    allowed = next(r for r in rows if r.record_type == "outcome" and r.outcome == "allowed_on_timeout")
    executed = next(r for r in rows if r.record_type == "outcome" and r.outcome == "executed")
    assert allowed.seq < executed.seq and allowed.reviewer == ""
    assert not any(r.outcome in ("approved", "denied") for r in rows)
    # A late click is refused, and told the call was let through.
    reviewer = Client()
    reviewer.force_login(w["alice"].user)
    page = reviewer.post(reverse("approvals:decide", args=[request.pk]), {"decision": "approve"}, follow=True)
    assert "on_timeout: allow, so the agent&#x27;s call was let through" in page.content.decode()


FAKE_AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def test_a_new_file_shows_as_a_green_diff_with_a_fake_aws_key_masked_and_unmasked_nowhere(world):
    """The policy redacts `content` in evidence (as the demo's does); the reviewer still sees the whole new file."""
    w = world(extra_policy='evidence:\n  redact: ["content"]\n')
    content = f"AWS_ACCESS_KEY_ID = '{FAKE_AWS_KEY}'\nregion = 'eu-west-1'\n"
    seen: dict[str, str] = {}

    def approve(request):
        reviewer = Client()
        reviewer.force_login(w["alice"].user)
        seen["queue"] = reviewer.get(reverse("approvals:queue")).content.decode()
        seen["card"] = reviewer.get(reverse("approvals:detail", args=[request.pk])).content.decode()
        api = APIClient()
        api.force_authenticate(w["alice"].user)
        seen["api"] = api.get(f"/api/v1/approval-requests/{request.pk}").content.decode()
        seen["diff"] = api.get(f"/api/v1/approval-requests/{request.pk}").json()["diff"]
        seen["row"] = repr(list(ApprovalRequest.objects.filter(pk=request.pk).values()))
        assert reviewer.post(reverse("approvals:decide", args=[request.pk]), {"decision": "approve"}).status_code == 302

    _result, request, _ = held_call_then(w, approve, expect_error=False, path="src/new_settings.py", content=content)
    assert (w["project"] / "src" / "new_settings.py").read_text() == content  # the real write ran
    added = [line for line in seen["diff"].splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert added == ["+AWS_ACCESS_KEY_ID = '[REDACTED: AWS Access Key]'", "+region = 'eu-west-1'"]  # green, masked
    assert '<span class="d-add">+region = &#x27;eu-west-1&#x27;</span>' in seen["card"]
    assert '<span class="d-del">' not in seen["card"]
    request.refresh_from_db()
    assert request.diff == ""  # purged once decided
    evidence = repr(list(EvidenceRecord.objects.filter(organization=w["org"]).values()))
    for where, text in {**seen, "evidence": evidence, "sidecar log": w["log"].read_text()}.items():
        assert FAKE_AWS_KEY not in text, f"the key is visible in the {where}"
    assert "[REDACTED]" in evidence  # the evidence keeps the policy-redacted arguments
