"""Scopes of a reviewer's answer and the two-person rule, end to end through real processes.

A real `cordum-sidecar` (listening over streamable HTTP, so one process serves two agent sessions at once) fronts
the real `@modelcontextprotocol/server-filesystem`; the MCP Python SDK is the agent; the control plane is the
Django live server with a policy repo synced from real git. Every step waits on an event (the approvals or
evidence notify channel, or the tool result), never on wall time.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from contextlib import asynccontextmanager, contextmanager

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from cordum.accounts.choices import Role
from cordum.approvals import services as approval_services
from cordum.approvals.models import ApprovalRequest
from cordum.common.notify import wait_for
from cordum.decisions.models import EvidenceRecord
from tests.approvals.e2e import NEW, ORIGINAL, REPO, held_call_then, in_thread, outcomes, wait_for_evidence
from tests.factories import MembershipFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SESSION_BOUND = "session_approval: {max_calls: 2, max_minutes: 30}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def http_sidecar(w):
    """The sidecar process, started from the world's config; returns once it listens (read from its log)."""
    env = {"PYTHONPATH": str(REPO), "CORDUM_AGENT_TOKEN": w["token"], "PATH": os.environ.get("PATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "cordum.sidecar", "run", "--config", str(w["config"])],
                            cwd=w["project"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "Uvicorn running" in line:
                threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining its logs
                break
        else:
            raise AssertionError(f"the sidecar exited before it listened (code {proc.wait()})")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@asynccontextmanager
async def agent_session(url: str):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


def next_request(org, seen: set) -> ApprovalRequest:
    """The first approval request of the organisation not in `seen` (it is added)."""
    found = wait_for(approval_services.approvals_org_channel(org.pk), 60,
                     lambda: ApprovalRequest.objects.filter(organization=org).exclude(pk__in=seen)
                     .select_related("agent").order_by("created_at").first())
    assert found is not None, "the sidecar never opened an approval request"
    seen.add(found.pk)
    return found


def decide_api(user, request, decision: str, **extra):
    api = APIClient()
    api.force_authenticate(user)
    return api.post(f"/api/v1/approval-requests/{request.pk}/decide", {"decision": decision, **extra},
                    format="json")


def write(session, path, content):
    return session.call_tool("write_file", {"path": str(path), "content": content})


def test_approve_for_this_session_lets_that_sessions_matching_calls_through_and_still_holds_another_session(world):
    port = free_port()
    w = world(approval_extra=SESSION_BOUND, listen=f"http://127.0.0.1:{port}/mcp")
    src = w["project"] / "src"
    seen: set = set()

    async def scenario():
        async with agent_session(f"http://127.0.0.1:{port}/mcp") as a, \
                agent_session(f"http://127.0.0.1:{port}/mcp") as b:
            first = asyncio.create_task(write(a, src / "app.py", NEW))
            request = await in_thread(lambda: next_request(w["org"], seen))
            assert not first.done(), "the first write was not held"
            assert request.session_approval == {"max_calls": 2, "max_minutes": 30}
            response = await in_thread(lambda: decide_api(w["alice"].user, request, "approve_session",
                                                          target_pattern=f"{src}/*", comment="refactor"))
            assert response.status_code == 200, response.content
            assert (response.json()["scope"], response.json()["target_pattern"]) == ("session", f"{src}/*")
            assert not (await first).is_error

            # The same session: a matching write (another file under src/) runs without a new request.
            second = await write(a, src / "second.py", "x = 2\n")
            assert not second.is_error, second
            assert await in_thread(lambda: ApprovalRequest.objects.filter(organization=w["org"]).count()) == 1

            # Another session, the very same call: held, a new request.
            other = asyncio.create_task(write(b, src / "second.py", "x = 3\n"))
            held = await in_thread(lambda: next_request(w["org"], seen))
            assert not other.done(), "another session's write went through on the first session's answer"
            assert held.session_id != request.session_id
            assert (await in_thread(lambda: decide_api(w["alice"].user, held, "deny"))).status_code == 200
            assert (await other).is_error

            # The same session but outside the target pattern: held.
            outside = asyncio.create_task(write(a, w["project"] / "README.md", "# hi\n"))
            off_pattern = await in_thread(lambda: next_request(w["org"], seen))
            assert not outside.done() and off_pattern.session_id == request.session_id
            assert (await in_thread(lambda: decide_api(w["alice"].user, off_pattern, "deny"))).status_code == 200
            assert (await outside).is_error

            # Within the policy's bound (max_calls: 2): one more goes through, the next is held.
            assert not (await write(a, src / "third.py", "x = 4\n")).is_error
            beyond = asyncio.create_task(write(a, src / "fourth.py", "x = 5\n"))
            over = await in_thread(lambda: next_request(w["org"], seen))
            assert not beyond.done() and over.session_id == request.session_id
            assert (await in_thread(lambda: decide_api(w["alice"].user, over, "deny"))).status_code == 200
            assert (await beyond).is_error

    with http_sidecar(w):
        asyncio.run(scenario())

    assert (src / "second.py").read_text() == "x = 2\n"  # session A's, not session B's
    assert (src / "third.py").exists() and not (src / "fourth.py").exists()
    assert not (w["project"] / "README.md").exists()

    # The evidence of each let-through call names the grant: approval id and reviewer.
    def granted():
        rows = list(EvidenceRecord.objects.filter(organization=w["org"], record_type="decision",
                                                  facts__contains='"grant"').order_by("seq"))
        executed = set(EvidenceRecord.objects.filter(organization=w["org"], outcome="executed")
                       .values_list("decision_id", flat=True))
        return rows if len(rows) == 2 and all(r.decision_id in executed for r in rows) else None

    rows = wait_for(f"evidence:{w['org'].pk}", 60, granted)
    assert rows, list(EvidenceRecord.objects.filter(organization=w["org"]).values("target", "outcome", "facts"))
    request = ApprovalRequest.objects.get(pk=sorted(seen, key=lambda pk: ApprovalRequest.objects.get(pk=pk).created_at)[0])
    for use, row in enumerate(rows, start=1):
        grant = json.loads(row.facts)["grant"]
        assert grant == {"approval_id": str(request.pk), "reviewer": "alice@example.com", "scope": "session",
                         "use": use, "max_calls": 2}
        assert (row.decision, row.reviewer, row.session_id) == ("require_approval", "alice@example.com",
                                                                request.session_id)
    assert [r.target.rsplit("/", 1)[-1] for r in rows] == ["second.py", "third.py"]


def test_a_two_person_topic_needs_two_distinct_reviewers_and_the_agents_owner_never_counts(world):
    w = world(approval_extra="approvals_required: 2")
    owner = w["owner"]
    owner.role = Role.REVIEWER  # the owner may review others' calls: still not count for their own agent's
    owner.save(update_fields=["role"])
    bob = MembershipFactory(organization=w["org"], role=Role.REVIEWER,
                            user=UserFactory(username="bob", email="bob@example.com"))
    seen: dict = {}

    def two_reviewers(request):
        assert request.approvals_required == 2
        refused = decide_api(owner.user, request, "approve")
        assert refused.status_code == 403 and "owner never counts" in refused.json()["message"]

        first = decide_api(w["alice"].user, request, "approve", comment="looks fine")
        assert first.status_code == 200, first.content
        assert first.json()["state"] == "pending"
        assert [a["reviewer"] for a in first.json()["approvals"]] == ["alice@example.com"]
        again = decide_api(w["alice"].user, request, "approve")  # the same person twice is still one
        assert again.status_code == 403 and "needs 1 more approval" in again.json()["message"]

        reviewer = Client()
        reviewer.force_login(bob.user)
        seen["card"] = reviewer.get(reverse("approvals:detail", args=[request.pk])).content.decode()
        request.refresh_from_db()
        assert request.state == "pending" and request.consumed_at is None  # the call still waits

        second = decide_api(bob.user, request, "approve", comment="ok")
        assert second.status_code == 200, second.content
        assert second.json()["state"] == "approved"

    result, request, _ = held_call_then(w, two_reviewers, expect_error=False)
    assert (w["project"] / "src" / "app.py").read_text() == NEW
    assert "1 of 2 approvals" in seen["card"] and "alice@example.com" in seen["card"]
    request.refresh_from_db()
    assert request.state == "approved" and request.consumed_at is not None
    assert request.reviewer_email == "alice@example.com, bob@example.com"
    rows = list(EvidenceRecord.objects.filter(organization=w["org"], decision_id=request.decision_id).order_by("seq"))
    assert outcomes(rows)[0] == "decision:require_approval"
    approved = next(r for r in rows if r.record_type == "outcome" and r.outcome == "approved")
    assert approved.reviewer == "alice@example.com, bob@example.com"
    assert "alice@example.com: looks fine" in approved.comment and "bob@example.com: ok" in approved.comment


def test_one_deny_ends_a_two_person_request_after_one_approval(world):
    w = world(approval_extra="approvals_required: 2")
    bob = MembershipFactory(organization=w["org"], role=Role.REVIEWER,
                            user=UserFactory(username="bob", email="bob@example.com"))

    def approve_then_deny(request):
        assert decide_api(w["alice"].user, request, "approve").json()["state"] == "pending"
        denied = decide_api(bob.user, request, "deny", comment="not without a ticket")
        assert denied.status_code == 200 and denied.json()["state"] == "denied"

    result, request, _ = held_call_then(w, approve_then_deny, expect_error=True)
    assert "Denied by bob@example.com" in "".join(getattr(c, "text", "") for c in result.content)
    assert (w["project"] / "src" / "app.py").read_text() == ORIGINAL
    rows = wait_for_evidence(w["org"], request.decision_id, lambda rows: any(r.outcome == "denied" for r in rows))
    assert not any(r.outcome in ("approved", "executed") for r in rows)


def hook(w, session: str, path, content: str) -> subprocess.Popen:
    """One Claude Code PreToolUse event for the filesystem server's write_file, answered by `cordum-sidecar hook`
    (a process per call, as Claude Code runs it)."""
    event = {"session_id": session, "transcript_path": "/tmp/t.jsonl", "cwd": str(w["project"]),
             "hook_event_name": "PreToolUse", "tool_name": "mcp__filesystem__write_file",
             "tool_input": {"path": str(path), "content": content}, "tool_use_id": f"toolu_{path.name}"}
    env = {"PYTHONPATH": str(REPO), "CORDUM_AGENT_TOKEN": w["token"], "PATH": os.environ.get("PATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "cordum.sidecar", "hook", "--config", str(w["config"])],
                            cwd=w["project"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    proc.stdin.write(json.dumps(event))
    proc.stdin.close()
    return proc


def hook_answer(proc: subprocess.Popen) -> tuple[str, str]:
    out = json.loads(proc.stdout.read())["hookSpecificOutput"]
    proc.wait(30)
    return out["permissionDecision"], out["permissionDecisionReason"]


def test_the_claude_code_hook_keeps_a_session_answer_across_its_one_call_processes(world):
    w = world(approval_extra=SESSION_BOUND)
    src = w["project"] / "src"
    seen: set = set()

    first = hook(w, "cc-1", src / "a.py", "a = 1\n")
    request = next_request(w["org"], seen)
    assert request.session_approval == {"max_calls": 2, "max_minutes": 30}
    assert decide_api(w["alice"].user, request, "approve_session", target_pattern=f"{src}/*").status_code == 200
    decision, reason = hook_answer(first)
    assert decision == "allow" and reason.startswith("Approved for this session by alice@example.com")

    decision, reason = hook_answer(hook(w, "cc-1", src / "b.py", "b = 2\n"))  # a new process, same session
    assert decision == "allow", reason
    assert f"approved for this session by alice@example.com (approval {request.pk}, call 1 of 2" in reason
    assert ApprovalRequest.objects.filter(organization=w["org"]).count() == 1

    other = hook(w, "cc-2", src / "b.py", "b = 3\n")  # another Claude Code session: asked again
    held = next_request(w["org"], seen)
    assert held.session_id == "sess_cc-2"
    assert decide_api(w["alice"].user, held, "deny").status_code == 200
    assert hook_answer(other)[0] == "deny"

    def granted():
        return EvidenceRecord.objects.filter(organization=w["org"], record_type="decision", session_id="sess_cc-1",
                                             facts__contains='"grant"').first()

    row = wait_for(f"evidence:{w['org'].pk}", 60, granted)
    assert row is not None and row.target.endswith("/src/b.py")
    assert json.loads(row.facts)["grant"]["approval_id"] == str(request.pk) and row.reviewer == "alice@example.com"
