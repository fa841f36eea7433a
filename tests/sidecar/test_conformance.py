"""MCP conformance at the sidecar: malformed JSON-RPC gets a JSON-RPC error and the sidecar keeps serving,
on stdio and on streamable HTTP; unsupported protocol versions are refused; a denied task-augmented call
answers as a failed task. Everything runs against a real sidecar process fronting the real filesystem server."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import POLICY, sidecar_env
from .test_http import free_port, start_and_wait, stop

pytestmark = [pytest.mark.slow]

SMALL_LIMIT = 256 * 1024  # CORDUM_MAX_MESSAGE_BYTES for these tests: a "huge" message without 64 MiB of traffic


class StdioSidecar:
    """The sidecar as a real process speaking newline-delimited JSON-RPC on its pipes, written to raw."""

    def __init__(self, fs_bin: str, project: Path, spool: Path) -> None:
        env = {**os.environ, **sidecar_env(CORDUM_MAX_MESSAGE_BYTES=str(SMALL_LIMIT))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cordum.sidecar", "run", "--bundle", str(POLICY), "--spool", str(spool),
             "--agent", "conformance-t", "--", fs_bin, str(project)],
            cwd=project, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.seq = 0

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict | None = None) -> dict:
        """Send a request and return its answer, collecting whatever came before it into self.before."""
        self.seq += 1
        req_id = f"probe-{self.seq}"
        self.write(json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params or {}}).encode())
        self.before: list[dict] = []
        while True:
            msg = self.lines.get(timeout=30)
            if msg.get("id") == req_id:
                return msg
            self.before.append(msg)

    def initialize(self) -> None:
        answer = self.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                             "clientInfo": {"name": "conformance", "version": "1"}})
        assert "result" in answer
        self.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def stdio_sidecar(fs_server_bin, project, tmp_path):
    sidecar = StdioSidecar(fs_server_bin, project, tmp_path / "spool.db")
    sidecar.initialize()
    yield sidecar
    sidecar.close()


def errors_after(sidecar: StdioSidecar, line: bytes) -> list[dict]:
    """Write `line`, then a ping; return what the sidecar answered to `line` (one error per batch element)."""
    sidecar.write(line)
    pong = sidecar.request("ping")
    assert pong.get("result") == {}, "the sidecar stopped serving"
    assert sidecar.before
    return sidecar.before


@pytest.mark.parametrize(("line", "code", "names"), [
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/list",', -32700, "Parse error"),
    (b'[1, 2]', -32600, "JSON object"),
    (b'[]', -32600, "empty batch"),
    (b'"just a string"', -32600, "JSON object"),
    (b'{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}', -32600, '"id"'),
    (b'{"jsonrpc":"2.0","id":[1],"method":"tools/call","params":{"name":"read_text_file"}}', -32600, '"id"'),
    (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', -32600, '"id"'),
    (b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":[1,2]}', -32602, '"params"'),
    (b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_text_file","arguments":"x"}}',
     -32602, "params.arguments"),
    (b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"x"}}}',
     -32600, 'needs an "id"'),
    (b'{"id":3,"method":"ping"}', -32600, '"jsonrpc"'),
    (b'{"jsonrpc":"2.0","id":3,"method":42}', -32600, '"method"'),
    (b'[' * 5000 + b']' * 5000, -32700, "Parse error"),
    (b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x","arguments":{"a":' + b'[' * 3000
     + b']' * 3000 + b'}}}', -32700, "Parse error"),
])
def test_malformed_json_rpc_on_stdio_gets_a_json_rpc_error_and_the_session_keeps_serving(
    stdio_sidecar, line, code, names
):
    for answer in errors_after(stdio_sidecar, line):
        assert answer["jsonrpc"] == "2.0" and answer["error"]["code"] == code
        assert names in answer["error"]["message"]
        assert answer["id"] in (None, 3, 7)


def test_a_message_over_the_size_limit_is_refused_and_the_session_keeps_serving(stdio_sidecar, project):
    huge = json.dumps({"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {
        "name": "write_file", "arguments": {"path": str(project / "big.txt"), "content": "x" * (SMALL_LIMIT * 2)}}})
    stdio_sidecar.write(huge.encode())
    pong = stdio_sidecar.request("ping")
    assert pong["result"] == {}
    assert stdio_sidecar.before and all(m["error"]["code"] in (-32600, -32700) for m in stdio_sidecar.before)
    assert any("too large" in m["error"]["message"] for m in stdio_sidecar.before)
    assert not (project / "big.txt").exists()
    read = stdio_sidecar.request("tools/call", {"name": "read_text_file",
                                                "arguments": {"path": str(project / "README.md")}})
    assert read["result"]["content"][0]["text"] == "# hello from the project\n"


def test_a_denied_task_augmented_call_answers_as_a_failed_task_with_the_deny_as_its_result(stdio_sidecar, project):
    created = stdio_sidecar.request("tools/call", {"name": "read_text_file", "task": {"ttl": 60000},
                                                   "arguments": {"path": str(project / ".env")}})
    task = created["result"]["task"]
    assert task["status"] == "failed" and task["ttl"] == 60000
    assert "deny-secrets-access" in task["statusMessage"]
    got = stdio_sidecar.request("tasks/get", {"taskId": task["taskId"]})
    assert got["result"]["taskId"] == task["taskId"] and got["result"]["status"] == "failed"
    payload = stdio_sidecar.request("tasks/result", {"taskId": task["taskId"]})["result"]
    assert payload["isError"] is True and "deny-secrets-access" in payload["content"][0]["text"]
    assert "SECRET" not in json.dumps(payload)
    assert payload["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task["taskId"]}
    cancel = stdio_sidecar.request("tasks/cancel", {"taskId": task["taskId"]})
    assert cancel["error"]["code"] == -32602


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
json_rpc_ish = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
     "method": st.sampled_from(["tools/call", "tools/list", "ping", "tasks/get", "notifications/cancelled"])
     | st.text(max_size=12) | json_values},
    optional={"id": json_values, "params": json_values
              | st.fixed_dictionaries({"name": st.sampled_from(["read_text_file", "nope"]) | json_values},
                                      optional={"arguments": json_values, "task": json_values})})
fuzz_lines = (st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" "))
              | json_values.map(lambda v: json.dumps(v).encode())
              | json_rpc_ish.map(lambda v: json.dumps(v).encode()))


def test_fuzzed_messages_on_stdio_never_stop_the_sidecar_serving(stdio_sidecar, project):
    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(line=fuzz_lines)
    def one(line: bytes) -> None:
        if not line.strip():
            return
        stdio_sidecar.write(line)
        pong = stdio_sidecar.request("ping")
        assert pong.get("result") == {}, f"no pong after {line!r}"
        assert stdio_sidecar.proc.poll() is None
        for msg in stdio_sidecar.before:
            assert msg.get("jsonrpc") == "2.0" and ("error" in msg or "result" in msg or "method" in msg)

    one()
    read = stdio_sidecar.request("tools/call", {"name": "read_text_file",
                                                "arguments": {"path": str(project / "README.md")}})
    assert read["result"]["content"][0]["text"] == "# hello from the project\n"


# --- streamable HTTP -------------------------------------------------------------------------------------

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def http_sidecar(fs_server_bin, project, tmp_path):
    from .conftest import write_config

    port = free_port()
    config = write_config(tmp_path / "sidecar.yaml", listen=f"http://127.0.0.1:{port}/mcp", bundle=str(POLICY),
                          spool=str(tmp_path / "spool.db"),
                          upstreams=[{"name": "filesystem", "command": [fs_server_bin, str(project)]}])
    proc = start_and_wait([sys.executable, "-m", "cordum.sidecar", "run", "--config", str(config)], cwd=project,
                          ready="Uvicorn running",
                          env={**os.environ, **sidecar_env(CORDUM_MAX_MESSAGE_BYTES=str(SMALL_LIMIT))})
    yield f"http://127.0.0.1:{port}/mcp"
    stop(proc)


def sse_json(response: httpx.Response) -> dict:
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    return json.loads([d for d in data if d][-1])


def http_session(client: httpx.Client, url: str) -> dict[str, str]:
    init = client.post(url, headers=HEADERS, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}})
    assert init.status_code == 200, init.text
    headers = dict(HEADERS, **{"mcp-session-id": init.headers["mcp-session-id"],
                               "mcp-protocol-version": "2025-11-25"})
    client.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return headers


def test_an_unsupported_mcp_protocol_version_gets_400_with_a_json_rpc_error(http_sidecar):
    with httpx.Client(timeout=30) as client:
        headers = http_session(client, http_sidecar)
        bad = client.post(http_sidecar, headers=dict(headers, **{"mcp-protocol-version": "1999-01-01"}),
                          json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        fresh = client.post(http_sidecar, headers=dict(HEADERS, **{"mcp-protocol-version": "9999-99-99"}),
                            json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
        ok = client.post(http_sidecar, headers=headers, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
    for response in (bad, fresh):
        assert response.status_code == 400
        body = response.json()
        assert body["jsonrpc"] == "2.0" and body["error"]["code"] == -32600
        assert "MCP-Protocol-Version" in body["error"]["message"]
    assert ok.status_code == 200 and sse_json(ok)["result"]["tools"]


def test_malformed_json_rpc_over_http_gets_an_error_and_every_session_keeps_serving(http_sidecar, project):
    bad_bodies = [b'{"jsonrpc":"2.0","id":1,', b'{"jsonrpc":"2.0","id":{"x":1},"method":"tools/list"}',
                  b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":[1]}', b'[' * 5000 + b']' * 5000,
                  b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"read_text_file",'
                  b'"arguments":"nope"}}']
    with httpx.Client(timeout=30) as client:
        victim = http_session(client, http_sidecar)
        other = http_session(client, http_sidecar)
        answers = [client.post(http_sidecar, headers=victim, content=body) for body in bad_bodies]
        huge = client.post(http_sidecar, headers=victim, content=b'{"x":"' + b"y" * (SMALL_LIMIT + 1) + b'"}')
        reads = [client.post(http_sidecar, headers=h, json={
            "jsonrpc": "2.0", "id": 10, "method": "tools/call",
            "params": {"name": "read_text_file", "arguments": {"path": str(project / "README.md")}}})
            for h in (victim, other)]
    for response in answers[:4]:
        assert response.status_code == 400 and response.json()["error"]["code"] in (-32700, -32600, -32602)
    assert sse_json(answers[4])["error"]["code"] == -32602
    assert huge.status_code == 413 and huge.json()["error"]["code"] == -32600
    for read in reads:
        assert sse_json(read)["result"]["content"][0]["text"] == "# hello from the project\n"
