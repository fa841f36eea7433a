"""Session data-flow rules through the real sidecar: the real filesystem server and a real fetch server (MCP SDK)
behind one sidecar, a real MCP client in front. Reading .env then fetching in the same session is denied with a
reason naming the read; another session may fetch; the simulator over the recorded calls decides the same; the
hook (one process per call) keeps a session's labels in its spool."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cordum.policy import compile_policy, load_policy_file
from cordum.policy.simulate import simulate_records
from cordum.sidecar.spool import Spool

from .conftest import DATA, PYTHON, mcp_session, sidecar_params, text_of
from .test_hook import claude, decision_of
from .test_hook_limits import run_hook

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

FLOW_POLICY = """\
version: v1
defaults: {decision: deny}
tools:
  - server: [fs, claude-code]
    tool: [read_text_file, Read]
    when: {args: {"path|file_path": {glob: ["**/.env"]}}}
    topic: job.mcp-bridge.read.secrets
    risk_tags: [credentials]
    target: "{path}{file_path}"
  - {server: fs, tool: "*", topic: job.mcp-bridge.read.file, target: "{path}"}
  - {server: claude-code, tool: Read, topic: job.mcp-bridge.read.file, target: "{file_path}"}
  - {server: [fetch, claude-code], tool: [fetch, WebFetch], topic: job.mcp-bridge.net.fetch, risk_tags: [egress],
     target: "{url}"}
rules:
  - id: allow-reads
    match: {topics: ["job.mcp-bridge.read.*"]}
    decision: allow
    reason: reads are fine
  - id: allow-fetch
    match: {topics: ["job.mcp-bridge.net.fetch"]}
    decision: allow
    reason: fetching is fine
  - id: deny-egress-after-secret-read
    match:
      risk_tags: [egress]
      after: [secret-read]
    decision: deny
    reason: No network egress from a session that has read a secret
labels:
  - label: secret-read
    match: {risk_tags: [credentials]}
"""


class _Web:
    """A real local web server the fetch tool can reach; counts the requests it gets."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                web.hits.append(self.path)
                body = b"hello from the web"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def web():
    w = _Web()
    yield w
    w.server.shutdown()
    w.server.server_close()


@pytest.fixture
def policy(tmp_path) -> Path:
    path = tmp_path / "safety.yaml"
    path.write_text(FLOW_POLICY)
    return path


def _config(tmp_path: Path, fs_bin: str, project: Path, policy: Path, spool: Path) -> Path:
    config = tmp_path / "sidecar.yaml"
    config.write_text(json.dumps({
        "agent": "claude-code-t", "environment": "dev", "spool": str(spool), "bundle": str(policy),
        "upstreams": [{"name": "fs", "command": [fs_bin, str(project)]},
                      {"name": "fetch", "command": [PYTHON, str(DATA / "fetch_mcp_server.py")]}],
    }))
    return config


async def test_reading_env_then_fetching_in_one_session_is_denied_naming_the_read_and_other_sessions_may_fetch(
        fs_server_bin, project, tmp_path, policy, web):
    spool_path = tmp_path / "spool.db"
    params = sidecar_params(["run", "--config", str(_config(tmp_path, fs_server_bin, project, policy, spool_path))],
                            cwd=project)
    async with mcp_session(params) as s:  # session A
        read = await s.call_tool("fs__read_text_file", {"path": str(project / ".env")})
        fetch = await s.call_tool("fetch__fetch", {"url": f"{web.url}/exfiltrate?d=SECRET"})
    assert not read.is_error and "SECRET=1" in text_of(read)
    assert fetch.is_error
    assert web.hits == []  # the denied call never reached the fetch server, so never the web
    async with mcp_session(params) as s:  # session B: a fresh agent session, no secret read
        other = await s.call_tool("fetch__fetch", {"url": f"{web.url}/docs"})
    assert not other.is_error and text_of(other) == "hello from the web"
    assert web.hits == ["/docs"]

    records = Spool(spool_path).records()
    read_rec, fetch_rec, other_rec = records
    assert read_rec["session_id"] == fetch_rec["session_id"] != other_rec["session_id"]
    text = text_of(fetch)
    assert text.startswith("Denied by Cordum policy rule deny-egress-after-secret-read: No network egress from a "
                           "session that has read a secret (session label 'secret-read' was set by "
                           f"fs.read_text_file on {project / '.env'} (call {read_rec['decision_id']}, at ")
    # the evidence: the read carries the label it set; the denial names the label and the call that set it
    assert (read_rec["decision"], read_rec["outcome"], read_rec["facts"]) == (
        "allow", "executed", {"labels": ["secret-read"]})
    assert (fetch_rec["decision"], fetch_rec["rule"], fetch_rec["outcome"]) == (
        "deny", "deny-egress-after-secret-read", "blocked")
    assert fetch_rec["facts"]["flow"] == {
        "label": "secret-read", "rule": "deny-egress-after-secret-read",
        "set_by": {"decision_id": read_rec["decision_id"], "server": "fs", "tool": "read_text_file",
                   "target": str(project / ".env"), "timestamp": read_rec["timestamp"]}}
    assert (other_rec["decision"], other_rec["rule"], other_rec.get("facts")) == ("allow", "allow-fetch", None)

    # The simulator over the recorded sessions decides every call as the sidecar did ...
    compiled = compile_policy(load_policy_file(policy).policy, "candidate")
    report = simulate_records(compiled, records)
    assert report["summary"]["changed_calls"] == 0 and report["summary"]["flows_replayed"] is True
    assert report["matrix"]["deny"]["deny"] == 1 and report["matrix"]["allow"]["allow"] == 2
    # ... and a candidate without the flow rule would have let exactly that fetch through.
    loose = tmp_path / "loose.yaml"
    loose.write_text(FLOW_POLICY.replace("    match:\n      risk_tags: [egress]\n      after: [secret-read]\n",
                                         "    match:\n      topics: [nothing.matches.this]\n")
                     .replace("labels:\n  - label: secret-read\n    match: {risk_tags: [credentials]}\n", ""))
    report = simulate_records(compile_policy(load_policy_file(loose).policy, "loose"), records)
    [changed] = report["changed_calls"]
    assert (changed["tool"], changed["before"], changed["after"]) == ("fetch", "deny", "allow")
    assert changed["samples"] == [fetch_rec["decision_id"]]


async def test_a_secret_read_that_never_ran_sets_no_label(fs_server_bin, project, tmp_path, web):
    held = tmp_path / "held.yaml"
    held.write_text(FLOW_POLICY.replace("  - id: allow-fetch", """\
  - id: approve-secrets
    match: {topics: ["job.mcp-bridge.read.secrets"]}
    decision: require_approval
  - id: allow-fetch"""))
    spool_path = tmp_path / "spool.db"
    params = sidecar_params(["run", "--config", str(_config(tmp_path, fs_server_bin, project, held, spool_path))],
                            cwd=project)
    async with mcp_session(params) as s:
        read = await s.call_tool("fs__read_text_file", {"path": str(project / ".env")})
        fetch = await s.call_tool("fetch__fetch", {"url": f"{web.url}/docs"})
    # offline, nobody can approve the read: it is refused and never reaches the server, so it sets no label
    assert read.is_error and "SECRET=1" not in text_of(read)
    assert not fetch.is_error and text_of(fetch) == "hello from the web"
    read_rec, fetch_rec = Spool(spool_path).records()
    assert read_rec["decision"] == "require_approval" and read_rec["facts"] == {"labels": ["secret-read"]}
    assert (fetch_rec["decision"], fetch_rec["rule"]) == ("allow", "allow-fetch")


def test_the_hook_keeps_a_sessions_labels_across_its_processes(tmp_path, policy):
    def event(session: str, tool: str, args: dict) -> dict:
        return dict(claude(tool, args), session_id=session)

    read = run_hook(event("s1", "Read", {"file_path": "/work/project/.env"}), policy, tmp_path)
    fetch = run_hook(event("s1", "WebFetch", {"url": "https://example.com/x"}), policy, tmp_path)
    other = run_hook(event("s2", "WebFetch", {"url": "https://example.com/x"}), policy, tmp_path)
    assert decision_of(read)[0] == "allow"
    decision, reason = decision_of(fetch)
    assert decision == "deny"
    assert "session label 'secret-read' was set by claude-code.Read on /work/project/.env" in reason
    assert decision_of(other)[0] == "allow"
    spool = Spool(tmp_path / "spool.db")
    records = spool.records()
    assert records[1]["facts"]["flow"]["set_by"]["decision_id"] == records[0]["decision_id"]
    stored = spool.hook_sessions()
    assert list(stored["sess_s1"].counters["flow_labels"]) == ["secret-read"]
    assert "sess_s2" not in stored  # its fetch set no label: nothing to keep


def _enforcer(tmp_path):
    from cordum.sidecar.enforcer import Enforcer

    return Enforcer(spool=Spool(tmp_path / "spool.db"), agent="claude-code-t", environment="dev", team=None,
                    sidecar_id="sc-test", root=str(tmp_path))


def test_a_new_policy_version_keeps_the_labels_running_sessions_hold(tmp_path, policy):
    from cordum.sidecar.enforcer import load_local_policy

    enforcer = _enforcer(tmp_path)
    enforcer.set_policy(load_local_policy(policy, trusted_keys={}))
    read = enforcer.decide(server="fs", tool="read_text_file", arguments={"path": "/p/.env"}, session_id="s1")
    assert enforcer.call_forwarded(read) == ["secret-read"]
    policy.write_text(FLOW_POLICY.replace("reason: fetching is fine", "reason: fetching is fine (v2)"))
    enforcer.set_policy(load_local_policy(policy, trusted_keys={}))  # another version, e.g. a rollout
    fetch = enforcer.decide(server="fetch", tool="fetch", arguments={"url": "https://example.com"}, session_id="s1")
    assert (fetch.decision, fetch.rule) == ("deny", "deny-egress-after-secret-read")
    assert read.decision_id in fetch.reason


def test_a_shadow_version_with_flow_rules_keeps_its_own_labels_and_reports_what_it_would_decide(tmp_path, policy):
    from cordum.sidecar.enforcer import load_local_policy

    plain = tmp_path / "plain.yaml"
    plain.write_text(FLOW_POLICY.split("  - id: deny-egress-after-secret-read")[0])
    enforcer = _enforcer(tmp_path)
    enforcer.set_policy(load_local_policy(plain, trusted_keys={}))
    enforcer.set_shadow(load_local_policy(policy, trusted_keys={}))
    read = enforcer.decide(server="fs", tool="read_text_file", arguments={"path": "/p/.env"}, session_id="s1")
    assert enforcer.call_forwarded(read) == []  # the policy in force sets no label; the shadow version does
    fetch = enforcer.decide(server="fetch", tool="fetch", arguments={"url": "https://example.com"}, session_id="s1")
    assert fetch.decision == "allow"
    assert [(s["rule"], s["decision"]) for s in fetch.record["shadow"]] == [("deny-egress-after-secret-read", "deny")]


async def test_one_http_sidecar_keeps_the_labels_of_its_concurrent_agent_sessions_apart(
        fs_server_bin, project, tmp_path, policy, web):
    """Two agents connected to one sidecar over streamable HTTP at once: the one that read .env may not fetch,
    the other may."""
    import os
    import sys

    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    from .conftest import sidecar_env, write_config
    from .test_http import free_port, start_and_wait, stop

    port = free_port()
    config = write_config(tmp_path / "sidecar.yaml", listen=f"http://127.0.0.1:{port}/mcp", bundle=str(policy),
                          spool=str(tmp_path / "spool.db"),
                          upstreams=[{"name": "fs", "command": [fs_server_bin, str(project)]},
                                     {"name": "fetch", "command": [PYTHON, str(DATA / "fetch_mcp_server.py")]}])
    proc = start_and_wait([sys.executable, "-m", "cordum.sidecar", "run", "--config", str(config)], cwd=project,
                          ready="Uvicorn running", env={**os.environ, **sidecar_env()})
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        async with streamable_http_client(url) as (ra, wa), streamable_http_client(url) as (rb, wb):
            async with ClientSession(ra, wa) as a, ClientSession(rb, wb) as b:
                await a.initialize()
                await b.initialize()
                read = await a.call_tool("fs__read_text_file", {"path": str(project / ".env")})
                denied = await a.call_tool("fetch__fetch", {"url": f"{web.url}/a"})
                allowed = await b.call_tool("fetch__fetch", {"url": f"{web.url}/b"})
    finally:
        stop(proc)
    assert not read.is_error
    assert denied.is_error and "deny-egress-after-secret-read" in text_of(denied)
    assert not allowed.is_error and text_of(allowed) == "hello from the web"
    assert web.hits == ["/b"]
