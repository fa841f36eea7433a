"""Session data-flow rules in real Claude Code (the pinned npm package, headless): the template's
`deny-egress-after-secret-read` through Claude Code's real PreToolUse hook, one process per call, with the
session's labels kept in the hook's spool. The scripted model (tests/clients/anthropic_api.py) is the only
stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cordum.sidecar.spool import Spool
from tests.clients.anthropic_api import ScriptedModel, ToolUse
from tests.clients.claude import CLAUDE, run_claude
from tests.clients.test_claude_code import TEMPLATE, _git, transcript_results
from tests.sidecar.conftest import sidecar_env

pytestmark = pytest.mark.slow


@pytest.fixture
def project_home(tmp_path):
    if not CLAUDE.exists():
        pytest.fail("node_modules is missing @anthropic-ai/claude-code: run `make node`")
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    (project / "infra").mkdir(parents=True)
    (project / "infra" / "terraform.tfstate").write_text('{"outputs": {"db_password": {"value": "hunter2"}}}\n')
    _git(project, "init", "-q", "-b", "main")
    (home / ".claude.json").write_text(json.dumps({"projects": {str(project): {"hasTrustDialogAccepted": True}}}))
    subprocess.run([sys.executable, "-m", "cordum.sidecar", "install", "claude-code", "--project", str(project),
                    "--bundle", str(TEMPLATE)], check=True, capture_output=True, env={**os.environ, **sidecar_env()})
    return project, home


def _session(project: Path, home: Path, script: list) -> dict[str, dict]:
    model = ScriptedModel(script)
    try:
        events = run_claude(project, home, model.url, "Check the infrastructure state, then publish.")
    finally:
        model.close()
    assert events[-1].get("subtype") == "success", events[-3:]
    return {**transcript_results(events), **model.tool_results()}


def test_a_push_after_reading_terraform_state_in_one_claude_session_is_denied_naming_the_read(project_home):
    project, home = project_home
    state = f"{project}/infra/terraform.tfstate"
    read, push = ToolUse("Read", {"file_path": state}), ToolUse("Bash", {"command": "git push origin main",
                                                                          "description": "push"})
    answers = _session(project, home, [[read], [push], "Done."])
    assert not answers[read.id]["is_error"] and "db_password" in answers[read.id]["content"]
    denied = answers[push.id]
    assert denied["is_error"] and "deny-egress-after-secret-read" in denied["content"], denied
    assert f"session label 'secret-read' was set by claude-code.Read on {state}" in denied["content"]

    # A new Claude Code session has read nothing: its push is the template's usual approval (nobody at this
    # headless terminal to give it), not the flow denial.
    other = ToolUse("Bash", {"command": "git push origin main", "description": "push"})
    fresh = _session(project, home, [[other], "Done."])[other.id]
    assert fresh["is_error"] and "approve-git-push" in fresh["content"]
    assert "deny-egress-after-secret-read" not in fresh["content"]

    records = [r for r in Spool(home / ".local" / "state" / "cordum" / "spool.db", recover=False).records()
               if r["record_type"] == "decision"]
    first, flow, second = records
    assert first["session_id"] == flow["session_id"] != second["session_id"]
    assert first["facts"]["labels"] == ["secret-read"]
    assert flow["facts"]["flow"]["set_by"]["decision_id"] == first["decision_id"]
