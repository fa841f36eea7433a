"""The demo's sidecars run in the demo workspace, so the template's blast-radius rule sees it as the root."""

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from cordum.accounts.demo_sidecars import sidecar_command, write_configs
from cordum.sidecar.spool import Spool

pytestmark = [pytest.mark.anyio]

TEMPLATE_POLICY = Path(settings.BASE_DIR) / "policies_repo_template" / "safety.yaml"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _offline(config: Path, port: int) -> None:
    """The written demo config, deciding with the template policy offline instead of the control plane."""
    data = yaml.safe_load(config.read_text())
    for key in ("control_plane", "token_file", "trusted_keys"):
        data.pop(key, None)
    data.update(bundle=str(TEMPLATE_POLICY), listen=f"http://127.0.0.1:{port}/mcp")
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "CORDUM_LOG_LEVEL": "INFO"})
    for line in proc.stderr:
        if "Uvicorn running" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc
    raise AssertionError(f"the demo sidecar exited before it was ready (code {proc.wait()})")


async def test_a_demo_sidecar_denies_writes_outside_the_demo_workspace(tmp_path):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    ctx = {"state_dir": tmp_path, "agent_tokens": {"claude-code-mo": "t1", "cursor-web": "t2"}, "trusted_keys": {}}
    config = next(c for c in write_configs(ctx) if c.stem == "claude-code-mo")
    if not any(u["name"] == "filesystem" for u in yaml.safe_load(config.read_text())["upstreams"]):
        pytest.skip("@modelcontextprotocol/server-filesystem is not installed (npm install)")
    port = _free_port()
    _offline(config, port)
    argv, cwd = sidecar_command(config)
    workspace = tmp_path / "demo-workspace"
    assert cwd == workspace
    proc = _start(argv, cwd)
    try:
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                outside = await s.call_tool("filesystem__write_file",
                                            {"path": str(tmp_path / "outside.txt"), "content": "x"})
    finally:
        proc.terminate()
        proc.wait(10)
    assert outside.is_error
    assert "deny-write-outside-repo" in outside.content[0].text
    assert not (tmp_path / "outside.txt").exists()
    # The evidence names the workspace as the root the call was decided against (it was the checkout before).
    records = Spool(Path(yaml.safe_load(config.read_text())["spool"])).records()
    assert [(r["rule"], r["root"]) for r in records] == [("deny-write-outside-repo", str(workspace))]


def test_each_demo_sidecar_keeps_its_own_last_good_bundle(tmp_path):
    from cordum.sidecar.config import load_config

    ctx = {"state_dir": tmp_path, "agent_tokens": {"claude-code-mo": "t1", "cursor-web": "t2"}, "trusted_keys": {}}
    stores = {load_config(path).bundle_store_path for path in write_configs(ctx)}
    assert stores == {tmp_path / "demo-sidecars" / "claude-code-mo.bundle.json",
                      tmp_path / "demo-sidecars" / "cursor-web.bundle.json"}
