"""Streamable HTTP on both sides: the sidecar listening for an agent over HTTP, and fronting an HTTP upstream."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cordum.sidecar.spool import Spool

from .conftest import (
    DATA,
    POLICY,
    fs_direct_params,
    mcp_session,
    sidecar_env,
    sidecar_params,
    text_of,
    write_config,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_and_wait(args: list[str], *, cwd: Path, ready: str, env: dict | None = None) -> subprocess.Popen:
    """Start a server process and block until its stderr says it is listening (no polling)."""
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if ready in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining its logs
            return proc
    raise AssertionError(f"{args[:3]} exited before it was ready (code {proc.wait()})")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


async def test_an_agent_over_streamable_http_gets_the_same_tools_and_decisions(fs_server_bin, project, tmp_path):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    port = free_port()
    outside = project.parent / "outside"
    config = write_config(tmp_path / "sidecar.yaml", listen=f"http://127.0.0.1:{port}/mcp", bundle=str(POLICY),
                          spool=str(tmp_path / "spool.db"),
                          upstreams=[{"name": "filesystem", "command": [fs_server_bin, str(project), str(outside)]}])
    proc = start_and_wait([sys.executable, "-m", "cordum.sidecar", "run", "--config", str(config)], cwd=project,
                          ready="Uvicorn running", env={**os.environ, **sidecar_env()})
    try:
        async with mcp_session(fs_direct_params(fs_server_bin, project, outside, cwd=project)) as s:
            direct = await s.list_tools()
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                tools = await s.list_tools()
                ok = await s.call_tool("read_text_file", {"path": str(project / "README.md")})
                denied = await s.call_tool("write_file", {"path": str(outside / "x.txt"), "content": "x"})
    finally:
        stop(proc)
    assert [t.model_dump() for t in tools.tools] == [t.model_dump() for t in direct.tools]
    assert text_of(ok) == "# hello from the project\n"
    assert denied.is_error and "deny-write-outside-project" in text_of(denied)
    assert not (outside / "x.txt").exists()
    assert [r["decision"] for r in Spool(tmp_path / "spool.db").records()] == ["allow", "deny"]


@pytest.mark.parametrize(("transport", "path"), [("http", "/mcp"), ("sse", "/sse")])
async def test_a_url_upstream_is_fronted_over_stdio(tmp_path, transport, path):
    port = free_port()
    server = start_and_wait([sys.executable, str(DATA / "http_mcp_server.py"), str(port), *(["sse"] if transport == "sse" else [])],
                            cwd=tmp_path, ready="Uvicorn running")
    policy = tmp_path / "notes.yaml"
    policy.write_text(
        "version: v1\ndefaults: {decision: deny}\n"
        "tools:\n  - {server: notes, tool: read_note, topic: job.mcp-bridge.read.note}\n"
        "rules:\n  - {id: allow-reads, match: {topics: ['job.mcp-bridge.read.*']}, decision: allow, reason: ok}\n")
    args = ["run", "--bundle", str(policy), "--spool", str(tmp_path / "spool.db"), "--name", "notes",
            "--url", f"http://127.0.0.1:{port}{path}", "--transport", transport]
    try:
        async with mcp_session(sidecar_params(args, cwd=tmp_path)) as s:
            names = {t.name for t in (await s.list_tools()).tools}
            read = await s.call_tool("read_note", {"name": "shopping"})
            delete = await s.call_tool("delete_note", {"name": "shopping"})
    finally:
        stop(server)
    assert names == {"read_note", "delete_note"}
    assert text_of(read) == "note shopping: remember the milk"
    assert delete.is_error and "Denied by Cordum policy rule defaults.decision" in text_of(delete)
