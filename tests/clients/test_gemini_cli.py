"""One policy across agents: the real Gemini CLI (pinned in package.json), run headless against a scripted
Gemini endpoint, with the Cordum sidecar as its MCP server in front of the real filesystem server. Its calls
get the same decisions as `cordum policy explain` gives for the same calls under the template policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cordum.sidecar.spool import Spool

from .gemini_api import ScriptedGemini

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_POLICY = REPO / "policies_repo_template" / "safety.yaml"
GEMINI = REPO / "node_modules" / ".bin" / "gemini"
FS_SERVER = REPO / "node_modules" / ".bin" / "mcp-server-filesystem"


def gemini_settings(project: Path, spool: Path) -> dict:
    """The project's .gemini/settings.json: the sidecar as the `filesystem` MCP server (what docs show)."""
    return {"mcpServers": {"filesystem": {
        "command": sys.executable,
        "args": ["-m", "cordum.sidecar", "run", "--bundle", str(TEMPLATE_POLICY), "--spool", str(spool),
                 "--agent", "gemini-cli", "--", str(FS_SERVER), str(project)],
        "cwd": str(REPO), "trust": True}}}


def explain(call: dict) -> dict:
    r = subprocess.run([sys.executable, "-m", "cordum", "policy", "explain", "--policy", str(TEMPLATE_POLICY),
                        "--call", json.dumps(call)], capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(r.stdout)


def test_gemini_cli_gets_the_same_decisions_as_policy_explain_and_evidence_names_the_agent(tmp_path):
    if not GEMINI.exists() or not FS_SERVER.exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REPO, check=True)
    project, home, spool = tmp_path / "project", tmp_path / "home", tmp_path / "spool.db"
    (project / ".gemini").mkdir(parents=True)
    (home / ".gemini").mkdir(parents=True)
    (project / "README.md").write_text("# hello from the project\n")
    (project / ".env").write_text("SECRET=do-not-leak\n")
    (project / ".gemini" / "settings.json").write_text(json.dumps(gemini_settings(project, spool)))
    (home / ".gemini" / "settings.json").write_text(json.dumps({"security": {
        "auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}}}))
    calls = [{"path": str(project / "README.md")}, {"path": str(project / ".env")}]
    api = ScriptedGemini([[{"functionCall": {"name": "mcp_filesystem_read_text_file", "args": args}}]
                          for args in calls] + [[{"text": "done"}]])
    try:
        env = {**os.environ, "HOME": str(home), "GEMINI_API_KEY": "scripted", "GOOGLE_GEMINI_BASE_URL": api.url}
        run = subprocess.run([str(GEMINI), "-p", "read the files", "--yolo", "--output-format", "json",
                              "-m", "gemini-2.5-flash"], cwd=project, env=env, capture_output=True, text=True,
                             timeout=300)
    finally:
        api.close()
    assert run.returncode == 0, run.stderr[-2000:]
    readme, secret = [part["functionResponse"]["response"] for part in api.function_responses()]
    assert "# hello from the project" in readme["output"]
    assert "Denied by Cordum policy rule deny-secrets-access" in secret["error"]
    assert "do-not-leak" not in json.dumps(api.requests)

    records = Spool(spool).records()
    assert [r["agent"] for r in records] == ["gemini-cli", "gemini-cli"]
    for record, args in zip(records, calls, strict=True):
        expected = explain({"server": "filesystem", "tool": "read_text_file", "arguments": args,
                            "agent": "gemini-cli"})
        assert (record["decision"], record["rule"]) == (expected["decision"], expected["rule"])
    assert [r["decision"] for r in records] == ["allow", "deny"]
    assert records[1]["rule"] == "deny-secrets-access"
