"""Heartbeats (non-fatal) and `cordum-sidecar status`."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from cordum.sidecar.bundles import BundleStore, generate_keypair, key_id_for
from cordum.sidecar.heartbeat import Heartbeat

from .conftest import PYTHON, mcp_session, sidecar_env, sidecar_params, write_config
from .test_proxy import _signed_bundle

pytestmark = pytest.mark.anyio


def _config(tmp_path, control_plane_url, fs_bin=None, project=None):
    private, public = generate_keypair()
    key_id = key_id_for(public)
    BundleStore(tmp_path / "bundle.json").save(_signed_bundle(private, key_id, sequence=7))
    upstreams = [{"name": "filesystem", "command": [fs_bin, str(project)]}] if fs_bin else []
    return write_config(tmp_path / "sidecar.yaml", control_plane=control_plane_url, spool=str(tmp_path / "spool.db"),
                        bundle_store=str(tmp_path / "bundle.json"), trusted_keys={key_id: public},
                        sidecar_id="sc-test-1", upstreams=upstreams)


@pytest.mark.slow
async def test_the_sidecar_reports_its_bundle_spool_and_counters(fs_server_bin, project, tmp_path, control_plane):
    config = _config(tmp_path, control_plane.url, fs_server_bin, project)
    params = sidecar_params(["run", "--config", str(config)], cwd=project, env={"CORDUM_AGENT_TOKEN": "cdm_agent_t"})
    async with mcp_session(params) as s:
        await s.call_tool("read_text_file", {"path": str(project / "README.md")})
        await s.call_tool("read_text_file", {"path": str(project / ".env")})
    first, last = control_plane.heartbeats[0], control_plane.heartbeats[-1]
    assert first["sidecar_id"] == "sc-test-1" and first["interval_seconds"] == 15
    assert (first["bundle_version"], first["bundle_sequence"]) == ("v1.0.0@3f2c1ab", 7)
    assert set(first) >= {"hostname", "version", "shadow_version", "spool_depth", "last_upload_at", "counters"}
    assert last["counters"] == {"allow": 1, "deny": 1, "require_approval": 0, "errors": 0}
    assert last["spool_depth"] == 0 and last["last_upload_at"]


async def test_a_failed_heartbeat_is_reported_not_raised():
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as client:
        beat = Heartbeat(client, lambda: {"sidecar_id": "x"})
        assert await beat.beat() is False
    assert beat.last_error


def test_status_shows_the_bundle_in_force_and_the_spool(tmp_path):
    config = _config(tmp_path, "http://127.0.0.1:9")
    out = subprocess.run([PYTHON, "-m", "cordum.sidecar", "status", "--config", str(config)], capture_output=True,
                         env=sidecar_env(), check=True)
    report = json.loads(out.stdout)
    assert report["sidecar_id"] == "sc-test-1" and report["mode"] == "online"
    assert (report["bundle_version"], report["bundle_sequence"]) == ("v1.0.0@3f2c1ab", 7)
    assert report["spool_depth"] == 0 and report["last_upload_at"] is None


def test_status_without_a_bundle_says_every_call_is_denied(tmp_path):
    config = write_config(tmp_path / "sidecar.yaml", control_plane="http://127.0.0.1:9", spool=str(tmp_path / "s.db"))
    out = subprocess.run([PYTHON, "-m", "cordum.sidecar", "status", "--config", str(config)], capture_output=True,
                         env=sidecar_env(), check=True)
    report = json.loads(out.stdout)
    assert report["bundle_version"] is None and "every call is denied" in report["bundle_error"]
