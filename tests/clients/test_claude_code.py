"""Real Claude Code (the pinned npm package, headless) governed by Cordum: `cordum-sidecar install claude-code`
on a project that already has MCP servers, then a scripted session through Claude Code's real hooks,
permission logic and MCP connections. The scripted model (tests/clients/anthropic_api.py) is the only stand-in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cordum.policy import compile_policy, load_policy_file
from cordum.policy.clients import CLIENT_TOOLS, uncovered_tools
from cordum.sidecar.spool import Spool
from tests.clients.anthropic_api import ScriptedModel, ToolUse
from tests.clients.claude import CLAUDE, claude_mcp_list, init_tools, run_claude
from tests.sidecar.conftest import FS_SERVER, sidecar_env, write_config
from tests.sidecar.test_http import free_port, start_and_wait, stop

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "policies_repo_template" / "safety.yaml"
BENIGN_TOOLS = {"Bash", "Read", "ToolSearch", "CronList", "ListAgents", "ListMcpResourcesTool"}
NOTES_SERVER = REPO / "tests" / "sidecar" / "data" / "http_mcp_server.py"


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", *args], cwd=repo, check=True, env=env, capture_output=True)


@pytest.fixture
def workspace(tmp_path):
    """A project that already uses Claude Code with MCP servers (filesystem and git over stdio, a notes server
    over SSE, another over streamable HTTP whose headers come from a headersHelper, and a Cordum sidecar over
    streamable HTTP named `cordum`), and a HOME in which the project is trusted."""
    if not CLAUDE.exists() or not FS_SERVER.exists():
        pytest.fail("node_modules is missing @anthropic-ai/claude-code or the filesystem server: run `make node`")
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    (project / "README.md").write_text("# payments service\n")
    (project / ".env").write_text("STRIPE_KEY=sk_live_not_for_models\n")
    (project / "src").mkdir()
    (project / "src" / "app.py").write_text("print('hello')\n")
    (project / "nb.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code", "id": "c1", "metadata": {},
                                                             "source": ["print(1)"], "outputs": [],
                                                             "execution_count": None}],
                                                  "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    skill = project / ".claude" / "skills" / "hello"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text("---\nname: hello\ndescription: Says hello.\n---\nSay hello.\n")
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", "README.md", "src/app.py")
    _git(project, "commit", "-q", "-m", "first")
    port = free_port()
    http_sidecar = start_and_wait(
        [sys.executable, "-m", "cordum.sidecar", "run", "--config", str(write_config(
            tmp_path / "http-sidecar.yaml", listen=f"http://127.0.0.1:{port}/mcp", bundle=str(TEMPLATE),
            spool=str(tmp_path / "http-spool.db"), agent="claude-code-http",
            upstreams=[{"name": "filesystem", "command": [str(FS_SERVER), str(project)]}]))],
        cwd=project, ready="Uvicorn running", env={**os.environ, **sidecar_env()})
    sse_port, api_port = free_port(), free_port()
    notes = [start_and_wait([sys.executable, str(NOTES_SERVER), str(sse_port), "sse"], cwd=tmp_path,
                            ready="Uvicorn running"),
             start_and_wait([sys.executable, str(NOTES_SERVER), str(api_port)], cwd=tmp_path, ready="Uvicorn running")]
    helper = tmp_path / "get-headers.sh"  # leaves a mark, so the test knows Claude Code ran it
    helper.write_text(f"#!/bin/sh\ntouch {tmp_path / 'helper-ran'}\necho '{{\"X-Team\": \"payments\"}}'\n")
    helper.chmod(0o755)
    servers = {
        "files": {"command": str(FS_SERVER), "args": [str(project)], "env": {"NODE_ENV": "production"}},
        "git": {"command": sys.executable, "args": ["-m", "mcp_server_git", "--repository", str(project)]},
        "cordum": {"type": "http", "url": f"http://127.0.0.1:{port}/mcp"},
        "events": {"type": "sse", "url": f"http://127.0.0.1:{sse_port}/sse"},
        "api": {"type": "http", "url": f"http://127.0.0.1:{api_port}/mcp", "headersHelper": str(helper)},
    }
    (project / ".mcp.json").write_text(json.dumps({"mcpServers": servers}, indent=2) + "\n")
    (home / ".claude.json").write_text(json.dumps({"projects": {str(project): {
        "hasTrustDialogAccepted": True, "enabledMcpjsonServers": list(servers)}}}))
    try:
        yield {"home": home, "project": project, "tmp": tmp_path}
    finally:
        for process in (http_sidecar, *notes):
            stop(process)


def transcript_results(events: list[dict]) -> dict[str, dict]:
    """Tool results as the client printed them (some, e.g. a refused Monitor, never go back to the model)."""
    out = {}
    for event in events:
        content = (event.get("message") or {}).get("content") if event.get("type") == "user" else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                text = block.get("content")
                if isinstance(text, list):
                    text = "".join(part.get("text", "") for part in text if isinstance(part, dict))
                out[block["tool_use_id"]] = {"content": text or "", "is_error": bool(block.get("is_error"))}
    return out


def install(project: Path) -> None:
    subprocess.run([sys.executable, "-m", "cordum.sidecar", "install", "claude-code", "--project", str(project),
                    "--bundle", str(TEMPLATE)], check=True, capture_output=True, env={**os.environ, **sidecar_env()})


def test_claude_code_works_through_cordum_benign_calls_run_risky_ones_are_refused_once(workspace):
    home, project = workspace["home"], workspace["project"]
    install(project)
    p = str(project)
    T = ToolUse
    script = [
        # benign: run without a prompt (ToolSearch loads the deferred MCP tool schemas, as the model would)
        [T("ToolSearch", {"query": "select:mcp__cordum__read_text_file,mcp__files__read_text_file,"
                                   "mcp__files__write_file,mcp__git__git_status,mcp__files__list_directory,"
                                   "mcp__git__git_log,mcp__git__git_diff_unstaged,mcp__cordum__list_directory,"
                                   "mcp__cordum__write_file,mcp__events__read_note,mcp__api__read_note",
                         "max_results": 12})],
        [T("Bash", {"command": "ls -la", "description": "list files"})],
        [T("Bash", {"command": "python3 --version", "description": "python version"})],
        [T("Bash", {"command": "git status --short", "description": "status"})],
        [T("Read", {"file_path": f"{p}/README.md"})],
        [T("CronList", {})],
        [T("ListAgents", {})],
        [T("mcp__files__read_text_file", {"path": f"{p}/src/app.py"})],
        [T("mcp__git__git_status", {"repo_path": p})],
        [T("mcp__cordum__read_text_file", {"path": f"{p}/README.md"})],
        [T("Bash", {"command": "pwd", "description": "where"})],
        [T("Bash", {"command": "git log --oneline -1", "description": "last commit"})],
        [T("Bash", {"command": "git diff", "description": "diff"})],
        [T("Bash", {"command": "ls src", "description": "list src"})],
        [T("Bash", {"command": "git --version", "description": "git version"})],
        [T("Read", {"file_path": f"{p}/src/app.py"})],
        [T("mcp__files__list_directory", {"path": p})],
        [T("mcp__git__git_log", {"repo_path": p})],
        [T("mcp__git__git_diff_unstaged", {"repo_path": p})],
        [T("mcp__cordum__list_directory", {"path": p})],
        [T("ListMcpResourcesTool", {})],
        # refused by the hook (built-in tools) or by the sidecar in front of the server (MCP tools)
        [T("Read", {"file_path": f"{p}/.env"})],
        [T("Bash", {"command": "cat .env", "description": "read env"})],
        [T("Bash", {"command": "rm -rf /tmp/not-there", "description": "delete"})],
        [T("Bash", {"command": "terraform destroy -auto-approve", "description": "destroy"})],
        [T("Bash", {"command": "git push origin main", "description": "push"})],
        [T("Write", {"file_path": f"{p}/new.txt", "content": "hello"})],
        [T("Edit", {"file_path": f"{p}/src/app.py", "old_string": "hello", "new_string": "bye"})],
        [T("mcp__files__read_text_file", {"path": f"{p}/.env"})],
        [T("mcp__files__write_file", {"path": f"{p}/evil.txt", "content": "x"})],
        [T("mcp__cordum__read_text_file", {"path": f"{p}/.env"})],
        [T("Bash", {"command": "head -1 .env", "description": "peek env"})],
        [T("Bash", {"command": "git push --force origin main", "description": "force push"})],
        [T("Bash", {"command": "kubectl delete namespace prod", "description": "delete ns"})],
        [T("Write", {"file_path": f"{p}/src/other.py", "content": "x = 1"})],
        [T("mcp__files__write_file", {"path": f"{p}/src/evil2.py", "content": "x"})],
        [T("mcp__cordum__write_file", {"path": f"{p}/evil3.txt", "content": "x"})],
        [T("mcp__files__read_text_file", {"path": f"{p}/.env", "head": 1})],
        [T("Read", {"file_path": f"{p}/.env", "limit": 1})],
        # asked about: nobody at this terminal in headless mode, so it never runs
        [T("Bash", {"command": "touch made-by-agent.txt", "description": "touch"})],
        [T("Bash", {"command": "mkdir build-by-agent", "description": "mkdir"})],
        # servers the template does not map: the SSE one (fronted by a sidecar, which cannot ask) is refused,
        # the headersHelper one (left to the hook) is asked about; both name what to add to the tool map
        [T("mcp__events__read_note", {"name": "shopping"})],
        [T("mcp__api__read_note", {"name": "shopping"})],
        # the rest of the built-in tools: the hook lets the planning and web ones run (whatever the tool itself
        # then makes of them here, offline and headless; their own model requests get a short text). Not run:
        # Workflow and an allowed Monitor answer in the background; CronDelete and TaskStop refuse ids they do not
        # know before any hook runs (a script cannot know the ids); their decisions are policy tests
        # (policies_repo_template/tests/claude_code.yaml).
        [T("ToolSearch", {"query": "select:CronCreate,SendMessage,EnterWorktree,ExitWorktree,WebSearch,WebFetch,Task", "max_results": 12})],
        [T("CronCreate", {"cron": "0 9 * * 1", "prompt": "check the build", "recurring": False})],
        [T("ScheduleWakeup", {"delaySeconds": 60, "reason": "wait for CI", "noop": True})],
        [T("ReportFindings", {"findings": []})],
        [T("SendMessage", {"to": "nobody", "message": "hello"})],
        [T("WebSearch", {"query": "cordum policy"})],
        [T("WebFetch", {"url": "https://example.com/", "prompt": "summarise"})],
        [T("Task", {"description": "look around", "prompt": "Say ok.", "subagent_type": "general-purpose"})],
        [T("Skill", {"skill": "hello"})],
        [T("Read", {"file_path": f"{p}/nb.ipynb"})],
        [T("EnterWorktree", {"name": "cordum-check"})],
        [T("ExitWorktree", {"action": "remove", "discard_changes": True})],
        [T("NotebookEdit", {"notebook_path": f"{p}/nb.ipynb", "cell_id": "c1", "new_source": "print(2)"})],
        "All done.",
    ]
    model = ScriptedModel(script)
    try:
        listing = claude_mcp_list(project, home, model.url)
        events = run_claude(project, home, model.url, "Do the maintenance tasks.")
    finally:
        model.close()

    for name in ("files", "git", "cordum", "events", "api"):
        assert f"{name}:" in listing and "Connected" in listing.split(f"{name}:", 1)[1].splitlines()[0], listing
    assert events[-1].get("subtype") == "success"
    results = {**transcript_results(events), **model.tool_results()}
    calls = [call for turn in script if not isinstance(turn, str) for call in turn]
    missing = [(call.id, call.name) for call in calls if call.id not in results]
    assert not missing, (missing, events[-3:])
    answer = {call.id: results[call.id] for call in calls}

    assert len(calls) >= 40
    benign, refused, asked, unmapped = calls[:21], calls[21:39], calls[39:41], calls[41:43]
    let_run, notebook = calls[43:-1], calls[-1]
    for call in benign:
        assert not answer[call.id]["is_error"], (call.name, answer[call.id]["content"][:600])
    assert "# payments service" in answer[benign[4].id]["content"]
    assert "print('hello')" in answer[benign[7].id]["content"]
    for call, rule in zip(refused, ["deny-secrets-access", "deny-secrets-access", "deny-infra-destroy",
                                         "deny-infra-destroy", "approve-git-push", "approve-code-write",
                                         "approve-code-write", "deny-secrets-access", "approve-code-write",
                                         "deny-secrets-access", "deny-secrets-access", "approve-git-push",
                                         "deny-infra-destroy", "approve-code-write", "approve-code-write",
                                         "approve-code-write", "deny-secrets-access",
                                         "deny-secrets-access"], strict=True):
        assert answer[call.id]["is_error"] and rule in answer[call.id]["content"], (call.name, answer[call.id])
        assert "sk_live_not_for_models" not in answer[call.id]["content"]
    for call in asked:
        assert answer[call.id]["is_error"] and "approve-shell" in answer[call.id]["content"], answer[call.id]
    for call in unmapped:
        content = answer[call.id]["content"]
        assert answer[call.id]["is_error"] and "unmapped tool read_note" in content and "milk" not in content, content
    assert (workspace["tmp"] / "helper-ran").exists()
    for call in let_run:  # Cordum let them through; what the tool made of them is the tool's
        assert "Cordum" not in answer[call.id]["content"], (call.name, answer[call.id]["content"][:300])
    assert answer[notebook.id]["is_error"] and "approve-code-write" in answer[notebook.id]["content"]
    assert "print(1)" in (project / "nb.ipynb").read_text() and "print(2)" not in (project / "nb.ipynb").read_text()
    for made in ("new.txt", "evil.txt", "evil3.txt", "src/other.py", "src/evil2.py", "made-by-agent.txt",
                 "build-by-agent"):
        assert not (project / made).exists(), made
    assert (project / "src" / "app.py").read_text() == "print('hello')\n"

    # One gate per call: the hook recorded the built-in calls, the sidecars the MCP calls, nobody twice.
    local = Spool(home / ".local" / "state" / "cordum" / "spool.db", recover=False).records()
    http = Spool(workspace["tmp"] / "http-spool.db", recover=False).records()
    decisions = [r for r in local + http if r["record_type"] == "decision"]
    assert len(decisions) == len(calls)
    assert sorted(r["server"] for r in decisions if r["server"] != "claude-code") == [
        "api", "events", *["filesystem"] * 10, "git", "git", "git"]
    outcomes = {r["decision_id"]: r["outcome"] for r in local + http if r["record_type"] == "outcome"}
    for record in decisions:
        final = record.get("outcome") or outcomes.get(record["decision_id"])
        strict = record["server"] != "claude-code" or record["tool"] in BENIGN_TOOLS
        expected = {"allow": {"executed"} if strict else {"executed", "failed"},
                    "deny": {"blocked"},
                    "require_approval": {"denied", "timed_out"} if record["server"] != "api" else {"unknown"}}
        assert final in expected[record["decision"]], {k: record.get(k) for k in ("server", "tool", "decision", "rule")}

    # What the client exposes, the template's tool map knows (and the list the CLI assumes is the client's own).
    builtin = [tool for tool in init_tools(events) if not tool.startswith("mcp__")]
    assert {"Bash", "Read", "Write", "Edit", "WebFetch", "Task"} <= set(builtin)
    assert uncovered_tools(compile_policy(load_policy_file(TEMPLATE).policy, "t"), builtin) == []
    # The MCP resource tools are listed only when a server offering resources has connected by init time.
    resource_tools = {"ListMcpResourcesTool", "ReadMcpResourceTool", "ReadMcpResourceDirTool"}
    assert set(CLIENT_TOOLS["claude-code"]) - resource_tools <= set(builtin) <= set(CLIENT_TOOLS["claude-code"])
    transcript = workspace["tmp"] / "transcript.jsonl"
    transcript.write_text("\n".join(json.dumps(e) for e in events))
    coverage = subprocess.run([sys.executable, "-m", "cordum", "policy", "coverage", str(TEMPLATE),
                               "--tools-from", str(transcript)], capture_output=True, text=True, check=False)
    assert coverage.returncode == 0 and f"{len(builtin)} of {len(builtin)} claude-code tools" in coverage.stderr


def test_when_the_sidecar_cannot_run_claude_code_blocks_the_call_and_says_why(workspace):
    home, project = workspace["home"], workspace["project"]
    subprocess.run([sys.executable, "-m", "cordum.sidecar", "install", "claude-code", "--project", str(project),
                    "--bundle", str(TEMPLATE), "--no-hook", "--sidecar-command", "/opt/missing/cordum-sidecar"],
                   check=True, capture_output=True, env={**os.environ, **sidecar_env()})
    from cordum.sidecar.install import _hook_command, add_claude_hook

    settings_path = project / ".claude" / "settings.json"
    settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
    command = _hook_command(["/opt/missing/cordum-sidecar"], ["--bundle", str(TEMPLATE)])
    add_claude_hook(settings, {"PreToolUse": command, "PostToolUse": command, "PostToolUseFailure": command})
    settings_path.parent.mkdir(exist_ok=True)
    settings_path.write_text(json.dumps(settings))
    read = ToolUse("Read", {"file_path": f"{project}/README.md"})
    model = ScriptedModel([[read], "done"])
    try:
        run_claude(project, home, model.url, "Read the README.")
    finally:
        model.close()
    answer = model.tool_results()[read.id]
    assert answer["is_error"] and "the call is blocked (fail closed)" in answer["content"]
    assert "payments service" not in answer["content"]
