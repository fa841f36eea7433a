"""Done-when of the approvals issue, with real processes end to end.

An MCP client (mcp SDK, stdio) calls `write_file` through a real `cordum-sidecar` process in front of the
real `@modelcontextprotocol/server-filesystem`. The sidecar enforces the bundle the control plane (Django
live server) published from a git policy repository, holds the call, opens an approval at the live server
and long-polls it. A reviewer decides (HTML UI or API); the evidence trail shows require_approval, the
reviewer, the decision and the final side effect. Nothing waits on wall time: each step waits on an event
(the approvals/evidence notify channels or the tool result).
"""

import asyncio
import os
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import git
import pytest
import yaml
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from cordum.accounts.choices import Role
from cordum.approvals import services as approval_services
from cordum.approvals.models import ApprovalRequest
from cordum.common.notify import wait_for
from cordum.decisions.models import EvidenceRecord
from cordum.policies import services as policy_services
from cordum.policies.models import PolicyBundle, SigningKey
from cordum.sidecar.bundles import BundleStore
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory, UserFactory, agent_with_token

REPO = Path(__file__).resolve().parents[2]
FS_SERVER = REPO / "node_modules" / ".bin" / "mcp-server-filesystem"
ORIGINAL = "DEBUG = True\n"
NEW = "DEBUG = False\n"

POLICY = """version: v1
defaults:
  decision: deny
  approval: {timeout: TIMEOUT, on_timeout: deny, reviewers: ["role:reviewer"], allow_self_approval: false}
tools:
  - server: filesystem
    tool: ["read_*", "list_*", "get_file_info", "search_files", "directory_tree", "list_allowed_directories"]
    topic: job.mcp-bridge.read.file
  - server: filesystem
    tool: [write_file, edit_file, create_directory, move_file]
    topic: job.mcp-bridge.write.file
    risk_tags: [code-change]
    target: "{path}"
    write: true
rules:
  - id: allow-code-read
    match: {topics: ["job.mcp-bridge.read.*"]}
    decision: allow
    reason: "File reads are safe"
  - id: approve-file-writes
    match: {topics: ["job.mcp-bridge.write.*"]}
    decision: require_approval
    reason: "File writes pause for developer review"
"""

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="session")
def fs_server_bin() -> str:
    if not FS_SERVER.exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REPO, check=True)
    return str(FS_SERVER)


@pytest.fixture
def world(tmp_path, settings, live_server, celery_eager, fs_server_bin):
    """An org whose policy repo (real git) is synced and published as a signed bundle; a sidecar config."""
    settings.CORDUM_GIT_CACHE_DIR = tmp_path / "git-cache"

    def build(timeout: str = "15m", on_timeout: str = "deny", extra_policy: str = "") -> dict:
        org = OrganizationFactory(slug="acme-e2e")
        payments = TeamFactory(organization=org, slug="payments", name="Payments")
        owner = MembershipFactory(organization=org, role=Role.MEMBER, user=UserFactory(username="mo",
                                                                                        email="mo@example.com"))
        alice = MembershipFactory(organization=org, role=Role.REVIEWER,
                                  user=UserFactory(username="alice", email="alice@example.com"))
        _agent, issued = agent_with_token(organization=org, name="claude-code-mo", team=payments, owner=owner.user)

        policy_repo = git.Repo.init(tmp_path / "policies", initial_branch="main")
        with policy_repo.config_writer() as config:
            config.set_value("user", "name", "Pat Author")
            config.set_value("user", "email", "pat@example.com")
            config.set_value("commit", "gpgsign", "false")
        (tmp_path / "policies" / "safety.yaml").write_text(POLICY.replace("TIMEOUT", timeout).replace(
            "on_timeout: deny", f"on_timeout: {on_timeout}") + extra_policy)
        policy_repo.index.add(["safety.yaml"])
        policy_repo.index.commit("File writes need approval")
        policy_repo.create_tag("v1.0.0")
        policy_services.signing_key_create(organization=org)
        repository, _secret = policy_services.repository_create(
            organization=org, actor=None, name="policies", url=str(tmp_path / "policies"))
        result = policy_services.sync_repository(repository=repository)
        assert result.published_bundle, result.warning
        bundle = PolicyBundle.objects.filter(organization=org).order_by("-sequence").first()

        project = tmp_path / "project"
        (project / "src").mkdir(parents=True)
        (project / "src" / "app.py").write_text(ORIGINAL)
        # The sidecar starts with the published bundle in its store (as after any earlier run) so the first
        # call is decided by it; it keeps long-polling the live server for newer ones.
        BundleStore(tmp_path / "bundle.json").save(bundle.bundle)
        config = {
            "control_plane": live_server.url, "token_env": "CORDUM_AGENT_TOKEN", "agent": "claude-code-mo",
            "team": "payments", "environment": "dev", "spool": str(tmp_path / "spool.db"),
            "bundle_store": str(tmp_path / "bundle.json"),
            "trusted_keys": {k.key_id: k.public_key for k in SigningKey.objects.filter(organization=org)},
            "approvals": {"poll_wait_seconds": 10, "progress_interval_seconds": 1},
            "upload": {"interval_seconds": 0.2}, "heartbeat": {"interval_seconds": 3600},
            "upstreams": [{"name": "filesystem", "command": [fs_server_bin, str(project)]}],
        }
        config_path = tmp_path / "sidecar.yaml"
        config_path.write_text(yaml.safe_dump(config))
        return {"org": org, "alice": alice, "owner": owner, "token": issued.plaintext, "project": project,
                "config": config_path, "bundle": bundle, "log": tmp_path / "sidecar.log"}

    return build


@asynccontextmanager
async def sidecar_session(w):
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "cordum.sidecar", "run", "--config", str(w["config"])],
        cwd=str(w["project"]),
        env={"PYTHONPATH": str(REPO), "CORDUM_AGENT_TOKEN": w["token"], "PATH": os.environ.get("PATH", "")},
    )
    with open(w["log"], "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def in_thread(fn):
    """Run DB work off the event loop, on its own connection (closed afterwards)."""

    def run():
        try:
            return fn()
        finally:
            connection.close()

    return asyncio.to_thread(run)


def wait_for_request(org) -> ApprovalRequest:
    found = wait_for(approval_services.approvals_org_channel(org.pk), 60,
                     lambda: ApprovalRequest.objects.filter(organization=org).select_related("agent").first())
    assert found is not None, "the sidecar never opened an approval request"
    return found


def wait_for_evidence(org, decision_id, predicate):
    def check():
        rows = list(EvidenceRecord.objects.filter(organization=org, decision_id=decision_id).order_by("seq"))
        return rows if predicate(rows) else None

    rows = wait_for(f"evidence:{org.pk}", 60, check)
    assert rows, f"evidence for {decision_id} never arrived: {list(EvidenceRecord.objects.filter(organization=org).values('record_type', 'outcome'))}"
    return rows


def outcomes(rows) -> list[str]:
    """The trail for one call in chain order: the decision, then each outcome (as `type:outcome[:reviewer]`)."""
    return [f"{r.record_type}:{r.decision if r.record_type == 'decision' else r.outcome}" for r in rows]


def held_call_then(w, decide, *, expect_error: bool, path: str = "src/app.py", content: str = NEW):
    """Call write_file through the sidecar, let `decide(request)` act while it is held, return (result, request)."""
    progress: list[str] = []

    async def scenario():
        async with sidecar_session(w) as session:
            async def on_progress(progress_value, total, message):
                progress.append(message or "")

            call = asyncio.create_task(session.call_tool(
                "write_file", {"path": str(w["project"] / path), "content": content},
                progress_callback=on_progress))
            request = await in_thread(lambda: wait_for_request(w["org"]))
            assert not call.done(), "the write was not held for approval"
            # The decision record is in the trail before anyone decides.
            await in_thread(lambda: wait_for_evidence(
                w["org"], request.decision_id, lambda rows: any(r.record_type == "decision" for r in rows)))
            await in_thread(lambda: decide(request))
            result = await asyncio.wait_for(call, 120)
            assert result.is_error is expect_error, result
            final = "executed" if not expect_error else None
            if final:
                await in_thread(lambda: wait_for_evidence(
                    w["org"], request.decision_id,
                    lambda rows: any(r.outcome == final and r.record_type == "outcome" for r in rows)))
            return result, request

    result, request = asyncio.run(scenario())
    return result, request, progress


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
