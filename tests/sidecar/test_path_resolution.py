"""Targets are judged as the server resolves them: a symlink to .env is .env, `~` is the home directory."""

from __future__ import annotations

import json
import subprocess

import pytest

from cordum.policy import compile_policy, load_policy_file
from cordum.policy.simulate import simulate_records
from cordum.sidecar.spool import Spool

from .conftest import POLICY, PYTHON, mcp_session, sidecar_env, text_of
from .test_hook import TEMPLATE, claude, decision_of
from .test_proxy import fs_sidecar

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_a_symlink_to_env_is_read_as_env_through_the_sidecar(fs_server_bin, project, tmp_path):
    (project / "innocent.txt").symlink_to(project / ".env")
    spool_path = tmp_path / "spool.db"
    async with mcp_session(fs_sidecar(fs_server_bin, project, spool_path)) as s:
        result = await s.call_tool("read_text_file", {"path": str(project / "innocent.txt")})
        plain = await s.call_tool("read_text_file", {"path": str(project / "README.md")})
    assert result.is_error and "deny-secrets-access" in text_of(result) and "SECRET=1" not in text_of(result)
    assert "innocent.txt -> " in text_of(result) and ".env" in text_of(result)
    assert not plain.is_error
    records = Spool(spool_path, recover=False).records()
    assert [r["rule"] for r in records] == ["deny-secrets-access", "allow-code-read"]
    # what the path reached is evidence, and the simulator (no file system of the agent's) replays by it
    assert records[0]["facts"]["reaches"] == {"path": str((project / ".env").resolve())}
    assert "facts" not in records[1] or "reaches" not in records[1]["facts"]
    report = simulate_records(compile_policy(load_policy_file(POLICY).policy), records)
    assert report["matrix"]["deny"]["deny"] == 1 and report["matrix"]["allow"]["allow"] == 1


@pytest.mark.parametrize("path", ["~/.bashrc", "../outside/notes.md"])
def test_a_write_that_reaches_outside_the_project_is_judged_outside_it(tmp_path, path):
    project = tmp_path / "project"
    project.mkdir()
    event = dict(claude("Write", {"file_path": path, "content": "x"}), cwd=str(project))
    done = subprocess.run([PYTHON, "-m", "cordum.sidecar", "hook", "--bundle", str(TEMPLATE), "--spool",
                           str(tmp_path / "s.db")], input=json.dumps(event).encode(), capture_output=True,
                          env=sidecar_env(), timeout=60)
    decision, reason = decision_of(json.loads(done.stdout))
    assert decision == "deny" and "deny-write-outside-repo" in reason
