"""require_approval through the sidecar against a small real control plane: the call is held, the agent gets
MCP progress notifications while a human decides, and it is forwarded only after approve + consume; denial,
timeout and an unreachable control plane all refuse (fail closed)."""

from __future__ import annotations

import contextlib
import json
import subprocess

import anyio
import pytest

from cordum.sidecar.bundles import BundleStore, generate_keypair, key_id_for

from .conftest import POLICY, PYTHON, mcp_session, sidecar_params, text_of, write_config
from .test_proxy import _signed_bundle

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def staged_repo(git_repo):
    (git_repo / "b.txt").write_text("two\n")
    subprocess.run(["git", "add", "b.txt"], cwd=git_repo, check=True)
    return git_repo


def _commits(repo) -> int:
    out = subprocess.run(["git", "rev-list", "--count", "HEAD"], cwd=repo, check=True, capture_output=True, text=True)
    return int(out.stdout)


def _outcome(control_plane, decision_id: str, outcome: str) -> dict:
    """The reviewer's answer as uploaded: folded into the decision record if that was still in the spool, or
    as its own outcome record if the decision had already been uploaded while the call was held."""
    record = control_plane.stored.get(f"{decision_id}:{outcome}") or control_plane.stored[decision_id]
    assert record["outcome"] == outcome
    return record


def _policy_with_approval(tmp_path, approval: str):
    """The test policy with `defaults.approval` set, e.g. "{timeout: 2s, on_timeout: allow}"."""
    path = tmp_path / "safety-approval.yaml"
    path.write_text(POLICY.read_text().replace("defaults:\n  decision: deny\n",
                                               f"defaults:\n  decision: deny\n  approval: {approval}\n", 1))
    return path


def _setup(tmp_path, repo, control_plane_url: str, cp=None, *, policy_path=POLICY, **approvals):
    private, public = generate_keypair()
    key_id = key_id_for(public)
    bundle = _signed_bundle(private, key_id, policy_path=policy_path)
    BundleStore(tmp_path / "bundle.json").save(bundle)
    if cp is not None:
        cp.bundle = bundle
    config = write_config(
        tmp_path / "sidecar.yaml", control_plane=control_plane_url, agent="claude-code-test",
        spool=str(tmp_path / "spool.db"), bundle_store=str(tmp_path / "bundle.json"), trusted_keys={key_id: public},
        approvals={"poll_wait_seconds": 1, "progress_interval_seconds": 0.2, **approvals},
        upload={"interval_seconds": 0.2},
        upstreams=[{"name": "git", "command": [PYTHON, "-m", "mcp_server_git", "--repository", str(repo)]}])
    return sidecar_params(["run", "--config", str(config)], cwd=repo, env={"CORDUM_AGENT_TOKEN": "cdm_agent_test"})


async def test_a_held_call_sends_progress_and_proceeds_when_approved(staged_repo, tmp_path, control_plane):
    params = _setup(tmp_path, staged_repo, control_plane.url, control_plane)
    progress: list[str] = []
    first_progress = anyio.Event()
    result = {}

    async def on_progress(value, total, message):
        progress.append(message)
        first_progress.set()

    async with mcp_session(params) as s:
        async def call():
            result["r"] = await s.call_tool("git_commit", {"repo_path": str(staged_repo), "message": "approved!"},
                                            progress_callback=on_progress)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            request = await anyio.to_thread.run_sync(control_plane.wait_for_approval_request)
            await first_progress.wait()
            assert _commits(staged_repo) == 1  # held: nothing forwarded yet
            control_plane.decide(request["id"], "approved")
    r = result["r"]
    assert not r.is_error, text_of(r)
    assert _commits(staged_repo) == 2
    assert "Waiting for human approval" in progress[0]
    assert request["rule"] == "approve-git-push" and request["tool"] == "git_commit"
    assert request["args"] == {"repo_path": str(staged_repo), "message": "approved!"}
    assert request["reviewers"] == ["role:reviewer"] and request["on_timeout"] == "deny"
    assert request["diff"] == ""  # a commit is not a file write: nothing to diff
    [consumed] = control_plane.consumed
    assert consumed["args_digest"] == request["args_digest"] and consumed["tool"] == "git_commit"
    assert control_plane.stored[request["decision_id"]]["decision"] == "require_approval"
    approved = _outcome(control_plane, request["decision_id"], "approved")
    assert approved["reviewer"] == "alice@example.com"
    assert f"{request['decision_id']}:executed" in control_plane.stored


async def test_a_call_the_reviewer_denies_is_refused_with_who_and_why(staged_repo, tmp_path, control_plane):
    params = _setup(tmp_path, staged_repo, control_plane.url, control_plane)
    result = {}
    async with mcp_session(params) as s:
        async def call():
            result["r"] = await s.call_tool("git_commit", {"repo_path": str(staged_repo), "message": "no"})

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            request = await anyio.to_thread.run_sync(control_plane.wait_for_approval_request)
            control_plane.decide(request["id"], "denied", reviewer="bob@example.com", comment="not on Friday")
    r = result["r"]
    assert r.is_error
    assert text_of(r).startswith("Denied by bob@example.com: not on Friday. Cordum policy rule approve-git-push")
    assert _commits(staged_repo) == 1 and control_plane.consumed == []
    assert _outcome(control_plane, request["decision_id"], "denied")["reviewer"] == "bob@example.com"


async def test_an_agent_that_cancels_a_held_call_withdraws_the_approval_request(staged_repo, tmp_path,
                                                                               control_plane):
    params = _setup(tmp_path, staged_repo, control_plane.url, control_plane)
    async with mcp_session(params) as s:
        async with anyio.create_task_group() as tg:
            async def call():
                await s.call_tool("git_commit", {"repo_path": str(staged_repo), "message": "never"})

            tg.start_soon(call)
            request = await anyio.to_thread.run_sync(control_plane.wait_for_approval_request)
            tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled for the request
        assert await anyio.to_thread.run_sync(control_plane.wait_for_cancel) == request["id"]
        # the session is still usable and the call was never forwarded
        assert not (await s.call_tool("git_log", {"repo_path": str(staged_repo)})).is_error
    assert _commits(staged_repo) == 1 and control_plane.consumed == []


async def test_no_answer_before_the_timeout_refuses_the_call(staged_repo, tmp_path, control_plane):
    params = _setup(tmp_path, staged_repo, control_plane.url, control_plane, max_wait_seconds=1.5)
    async with mcp_session(params) as s:
        r = await s.call_tool("git_commit", {"repo_path": str(staged_repo), "message": "late"})
    assert r.is_error and text_of(r).startswith("Approval timed out; denied (fail closed)")
    assert _commits(staged_repo) == 1
    assert control_plane.approval_requests[0]["timeout_seconds"] == 2  # rounded, as sent to the control plane


async def test_no_answer_within_the_policy_timeout_lets_the_call_through_when_on_timeout_is_allow(
        staged_repo, tmp_path, control_plane):
    # the control plane never decides (nor expires) the request: the sidecar's own deadline runs out
    policy = _policy_with_approval(tmp_path, "{timeout: 2s, on_timeout: allow}")
    params = _setup(tmp_path, staged_repo, control_plane.url, control_plane, policy_path=policy)
    async with mcp_session(params) as s:
        r = await s.call_tool("git_commit", {"repo_path": str(staged_repo), "message": "nobody answered"})
    assert not r.is_error, text_of(r)
    assert _commits(staged_repo) == 2  # the call ran
    [request] = control_plane.approval_requests
    assert request["on_timeout"] == "allow" and request["timeout_seconds"] == 2
    assert control_plane.consumed == []  # nothing was approved, so nothing consumed
    allowed = control_plane.stored[f"{request['decision_id']}:allowed_on_timeout"]
    assert allowed["record_type"] == "outcome" and allowed["reviewer"] is None
    assert "on_timeout: allow" in allowed["comment"]
    _outcome(control_plane, request["decision_id"], "executed")
    assert f"{request['decision_id']}:timed_out" not in control_plane.stored


async def test_a_request_the_control_plane_expires_lets_the_call_through_when_on_timeout_is_allow(
        staged_repo, tmp_path, control_plane):
    policy = _policy_with_approval(tmp_path, "{timeout: 15m, on_timeout: allow}")
    params = _setup(tmp_path, staged_repo, control_plane.url, control_plane, policy_path=policy)
    control_plane.auto_decide = ("expired", None)  # the server expired it: its 15 minutes are up
    async with mcp_session(params) as s:
        r = await s.call_tool("git_commit", {"repo_path": str(staged_repo), "message": "expired"})
    assert not r.is_error, text_of(r)
    assert _commits(staged_repo) == 2
    [request] = control_plane.approval_requests
    assert f"{request['decision_id']}:allowed_on_timeout" in control_plane.stored
    _outcome(control_plane, request["decision_id"], "executed")


async def test_a_local_wait_cap_shorter_than_the_policy_timeout_still_refuses_despite_on_timeout_allow(
        staged_repo, tmp_path, control_plane):
    # max_wait_seconds ends the wait before the policy's 15 minutes: that is not the policy's timeout
    policy = _policy_with_approval(tmp_path, "{timeout: 15m, on_timeout: allow}")
    params = _setup(tmp_path, staged_repo, control_plane.url, control_plane, policy_path=policy,
                    max_wait_seconds=1.5)
    async with mcp_session(params) as s:
        r = await s.call_tool("git_commit", {"repo_path": str(staged_repo), "message": "capped"})
    assert r.is_error and text_of(r).startswith("Approval timed out; denied (fail closed)")
    assert _commits(staged_repo) == 1


async def test_a_reviewers_denial_refuses_the_call_even_when_on_timeout_is_allow(staged_repo, tmp_path,
                                                                                 control_plane):
    policy = _policy_with_approval(tmp_path, "{timeout: 15m, on_timeout: allow}")
    params = _setup(tmp_path, staged_repo, control_plane.url, control_plane, policy_path=policy)
    control_plane.auto_decide = ("denied", "bob@example.com")
    async with mcp_session(params) as s:
        r = await s.call_tool("git_commit", {"repo_path": str(staged_repo), "message": "no"})
    assert r.is_error and text_of(r).startswith("Denied by bob@example.com")
    assert _commits(staged_repo) == 1


async def test_an_unreachable_control_plane_refuses_held_calls(staged_repo, tmp_path):
    params = _setup(tmp_path, staged_repo, "http://127.0.0.1:9")
    async with mcp_session(params) as s:
        r = await s.call_tool("git_commit", {"repo_path": str(staged_repo), "message": "x"})
        log = await s.call_tool("git_log", {"repo_path": str(staged_repo)})  # allowed calls still work offline
    assert r.is_error and "control plane unreachable" in text_of(r) and "fail closed" in text_of(r)
    assert _commits(staged_repo) == 1
    assert not log.is_error


async def test_a_held_call_whose_sidecar_is_killed_is_recorded_cancelled_by_the_next_start(
        staged_repo, tmp_path, control_plane, stderr_log):
    import contextlib
    import os
    import signal

    from cordum.sidecar.enforcer import INTERRUPTED_HELD

    from .conftest import sidecar_pids

    params = _setup(tmp_path, staged_repo, control_plane.url, control_plane)
    log_handle, log_path = stderr_log
    with contextlib.suppress(Exception):
        async with mcp_session(params, errlog=log_handle) as s:
            async with anyio.create_task_group() as tg:
                async def call():
                    await s.call_tool("git_commit", {"repo_path": str(staged_repo), "message": "held"})

                tg.start_soon(call)
                request = await anyio.to_thread.run_sync(control_plane.wait_for_approval_request)
                log_handle.flush()
                os.kill(sidecar_pids(log_path)[-1], signal.SIGKILL)
    assert control_plane.cancelled == []  # killed: it could not withdraw the request itself
    async with mcp_session(params, errlog=log_handle) as s:  # restart: closes the call, uploads it
        assert not (await s.call_tool("git_log", {"repo_path": str(staged_repo)})).is_error
    closed = control_plane.stored[f"{request['decision_id']}:cancelled"]
    assert closed["comment"] == INTERRUPTED_HELD
    assert _commits(staged_repo) == 1  # never forwarded


@contextlib.contextmanager
def _http_sidecar_session(staged_repo, tmp_path, control_plane):
    """The sidecar listening on streamable HTTP in front of mcp-server-git; yields (url, headers of an initialized
    MCP session, an httpx client)."""
    import sys

    import httpx
    import yaml

    from .test_http import free_port, start_and_wait, stop

    params = _setup(tmp_path, staged_repo, control_plane.url, control_plane)  # writes the sidecar.yaml
    config = tmp_path / "sidecar.yaml"
    port = free_port()
    values = yaml.safe_load(config.read_text())
    values["listen"] = f"http://127.0.0.1:{port}/mcp"
    config.write_text(yaml.safe_dump(values))
    proc = start_and_wait([sys.executable, "-m", "cordum.sidecar", "run", "--config", str(config)], cwd=staged_repo,
                          ready="Uvicorn running", env=params.env)
    url = f"http://127.0.0.1:{port}/mcp"
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    try:
        with httpx.Client(timeout=30) as http:
            init = http.post(url, headers=headers, json={
                "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
            session = {**headers, "mcp-session-id": init.headers["mcp-session-id"],
                       "mcp-protocol-version": "2025-06-18"}
            http.post(url, headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            yield url, session, http
    finally:
        stop(proc)


def _held_commit(staged_repo) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "git_commit", "arguments": {"repo_path": str(staged_repo), "message": "never"}}})


async def test_a_call_held_when_its_http_session_ends_is_withdrawn_and_never_runs(staged_repo, tmp_path, control_plane):
    """No notifications/cancelled: the agent simply ends its streamable-HTTP session while the call is held."""
    import threading

    import httpx

    with _http_sidecar_session(staged_repo, tmp_path, control_plane) as (url, session, http):
        def call() -> None:  # the agent's request stream; it ends when the session is deleted
            with httpx.Client(timeout=30) as other:
                try:
                    other.post(url, headers=session, content=_held_commit(staged_repo))
                except httpx.HTTPError:
                    pass

        threading.Thread(target=call, daemon=True).start()
        request = await anyio.to_thread.run_sync(control_plane.wait_for_approval_request)
        assert http.delete(url, headers=session).status_code in (200, 204)
        assert await anyio.to_thread.run_sync(control_plane.wait_for_cancel) == request["id"]
    assert _commits(staged_repo) == 1 and control_plane.consumed == []


async def test_a_call_held_when_the_agent_drops_its_request_stream_is_withdrawn_and_never_runs(
        staged_repo, tmp_path, control_plane):
    """The agent's connection for the tools/call closes (crash, Ctrl-C) while the call waits for approval. The
    sidecar keeps no event store, so the answer could never reach the agent: the call is withdrawn, not run."""
    import threading

    import httpx

    from cordum.sidecar.spool import Spool

    drop = threading.Event()
    with _http_sidecar_session(staged_repo, tmp_path, control_plane) as (url, session, http):
        def call() -> None:  # the request stream, closed by the agent while the call is held
            with httpx.Client(timeout=30) as other, other.stream("POST", url, headers=session,
                                                                 content=_held_commit(staged_repo)):
                drop.wait(30)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        request = await anyio.to_thread.run_sync(control_plane.wait_for_approval_request)
        drop.set()  # the agent goes away; its session is not deleted
        assert await anyio.to_thread.run_sync(control_plane.wait_for_cancel) == request["id"]
        caller.join(10)
        assert http.post(url, headers=session, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
                         ).status_code == 200  # the session itself lives on
    assert _commits(staged_repo) == 1 and control_plane.consumed == []
    cancelled = control_plane.stored.get(f"{request['decision_id']}:cancelled") or next(
        r for r in Spool(tmp_path / "spool.db").records() if r.get("outcome") == "cancelled")
    assert "connection closed while the call waited for approval" in cancelled["comment"]
