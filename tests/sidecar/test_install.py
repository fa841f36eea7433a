"""`cordum-sidecar install`: agent configs are rewritten to launch every MCP server behind the sidecar, without
losing anything the user had, with a backup, and `--dry-run` writes nothing."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from cordum.sidecar.cli import main

from .conftest import POLICY, PYTHON, REPO, mcp_session, text_of

SIDECAR_CMD = f"{PYTHON} -m cordum.sidecar"


@pytest.fixture
def claude_project(tmp_path: Path, fs_server_bin) -> Path:
    proj = tmp_path / "proj"
    (proj / ".claude").mkdir(parents=True)
    (proj / "README.md").write_text("hi\n")
    (proj / ".mcp.json").write_text(json.dumps({
        "mcpServers": {
            "filesystem": {"command": fs_server_bin, "args": [str(proj)], "env": {"DEBUG": "0"}},
            "remote": {"type": "http", "url": "https://tools.example.com/mcp", "headers": {"X-Team": "payments"}},
        },
        "someOtherKey": {"keep": True},
    }, indent=2))
    (proj / ".claude" / "settings.json").write_text(json.dumps({
        "permissions": {"allow": ["Bash(ls:*)"]},
        "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "./mine.sh"}]}]},
    }))
    return proj


def install(*args: str) -> int:
    return main(["install", *args, "--sidecar-command", SIDECAR_CMD])


def test_claude_code_project_install_wraps_every_server_and_keeps_the_rest(claude_project, fs_server_bin):
    assert install("claude-code", "--project", str(claude_project), "--bundle", str(POLICY)) == 0
    mcp = json.loads((claude_project / ".mcp.json").read_text())
    fs = mcp["mcpServers"]["filesystem"]
    assert fs["command"] == PYTHON
    assert fs["args"] == ["-m", "cordum.sidecar", "run", "--bundle", str(POLICY), "--name", "filesystem", "--",
                          fs_server_bin, str(claude_project)]
    assert fs["env"] == {"DEBUG": "0"}
    remote = mcp["mcpServers"]["remote"]
    assert remote["type"] == "stdio" and remote["args"][-4:] == [
        "--url", "https://tools.example.com/mcp", "--header", "X-Team: payments"]
    assert mcp["someOtherKey"] == {"keep": True}
    settings = json.loads((claude_project / ".claude" / "settings.json").read_text())
    assert settings["permissions"] == {"allow": ["Bash(ls:*)"]}
    mine, ours = settings["hooks"]["PreToolUse"]
    assert mine["hooks"][0]["command"] == "./mine.sh"
    decide = ours["hooks"][0]["command"]
    plain = shlex.join([PYTHON, "-m", "cordum.sidecar", "hook", "--bundle", str(POLICY)])
    assert ours["matcher"] == "*" and decide.startswith(plain + " || ") and "exit 2" in decide  # fails closed
    for event in ("PostToolUse", "PostToolUseFailure"):  # the call's outcome goes into the evidence too
        [post] = settings["hooks"][event]
        assert post["hooks"][0]["command"] == plain  # the call already ran: nothing to block
    records = sorted(p.name for p in claude_project.rglob("*.cordum-original"))
    assert records == [".mcp.json.cordum-original", "settings.json.cordum-original"]


def test_installing_twice_changes_nothing(claude_project, capsys):
    install("claude-code", "--project", str(claude_project), "--bundle", str(POLICY))
    before = (claude_project / ".mcp.json").read_text(), (claude_project / ".claude" / "settings.json").read_text()
    capsys.readouterr()
    assert install("claude-code", "--project", str(claude_project), "--bundle", str(POLICY)) == 0
    assert "Nothing to change" in capsys.readouterr().out
    after = (claude_project / ".mcp.json").read_text(), (claude_project / ".claude" / "settings.json").read_text()
    assert before == after


def test_dry_run_prints_the_change_and_writes_nothing(claude_project, capsys):
    files = sorted(claude_project.rglob("*"))
    before = {p: p.read_bytes() for p in files if p.is_file()}
    assert install("claude-code", "--project", str(claude_project), "--bundle", str(POLICY), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "cordum.sidecar" in out and "(with Cordum)" in out and "nothing was written" in out
    assert sorted(claude_project.rglob("*")) == files
    assert {p: p.read_bytes() for p in files if p.is_file()} == before


def test_invalid_json_is_refused_and_left_alone(tmp_path, capsys):
    (tmp_path / ".mcp.json").write_text("{broken")
    assert install("claude-code", "--project", str(tmp_path)) == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert (tmp_path / ".mcp.json").read_text() == "{broken"


def test_managed_install_writes_managed_mcp_json_from_the_projects_servers(claude_project, tmp_path):
    managed = tmp_path / "managed"
    project_file = (claude_project / ".mcp.json").read_text()
    assert install("claude-code", "--managed", "--managed-dir", str(managed), "--project", str(claude_project),
                   "--config", "/etc/cordum/sidecar.yaml") == 0
    servers = json.loads((managed / "managed-mcp.json").read_text())["mcpServers"]
    assert set(servers) == {"filesystem", "remote"}
    assert servers["filesystem"]["args"][:6] == ["-m", "cordum.sidecar", "run", "--config", "/etc/cordum/sidecar.yaml",
                                                 "--name"]
    hook = json.loads((managed / "managed-settings.json").read_text())["hooks"]["PreToolUse"][0]["hooks"][0]
    assert "hook --config /etc/cordum/sidecar.yaml" in hook["command"]
    assert (claude_project / ".mcp.json").read_text() == project_file  # the project's own file is untouched


def test_cursor_install_writes_mcp_json_and_hooks_json(tmp_path, fs_server_bin):
    cursor_dir = tmp_path / ".cursor"
    cursor_dir.mkdir()
    (cursor_dir / "mcp.json").write_text(json.dumps({"mcpServers": {"fs": {"command": fs_server_bin, "args": ["."]}}}))
    (cursor_dir / "hooks.json").write_text(json.dumps(
        {"version": 1, "hooks": {"afterFileEdit": [{"command": "./format.sh"}]}}))
    assert install("cursor", "--project", str(tmp_path), "--bundle", str(POLICY)) == 0
    mcp = json.loads((cursor_dir / "mcp.json").read_text())
    assert mcp["mcpServers"]["fs"]["args"][:3] == ["-m", "cordum.sidecar", "run"]
    hooks = json.loads((cursor_dir / "hooks.json").read_text())
    mine, ours = hooks["hooks"]["afterFileEdit"]
    assert mine == {"command": "./format.sh"}  # theirs kept, first
    for event in ("beforeShellExecution", "beforeMCPExecution", "beforeReadFile"):
        [entry] = hooks["hooks"][event]
        assert "--agent-format cursor || " in entry["command"] and "\"permission\": \"deny\"" in entry["command"]
        assert entry["timeout"] == 60
    for entry in (hooks["hooks"]["afterShellExecution"][0], hooks["hooks"]["afterMCPExecution"][0], ours):
        assert entry["command"].endswith("--agent-format cursor") and entry["timeout"] == 10  # records only
    assert len(list(cursor_dir.glob("*.cordum-original"))) == 2


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mode)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def three_server_project(tmp_path: Path, fs_server_bin) -> Path:
    """A project as users have it: stdio, SSE and HTTP-with-headersHelper servers, odd modes, odd formatting."""
    proj = tmp_path / "three"
    (proj / ".claude").mkdir(parents=True)
    mcp = (proj / ".mcp.json")
    mcp.write_text('{\n    "mcpServers": {\n'
                   f'        "filesystem": {{"command": "{fs_server_bin}", "args": ["."], "env": {{"A": "1"}}, '
                   '"cwd": "sub", "x-custom": [1, 2]},\n'
                   '        "events": {"type": "sse", "url": "http://127.0.0.1:9/sse", "headers": {"X-K": "v"}},\n'
                   '        "api": {"type": "http", "url": "http://127.0.0.1:9/mcp", '
                   '"headersHelper": "./get-token.sh", "oauth": {"clientId": "abc"}}\n'
                   '    }\n}')  # no trailing newline, four-space indent: none of it is ours to reformat
    mcp.chmod(0o664)
    settings = proj / ".claude" / "settings.json"
    settings.write_text('{"permissions": {"allow": ["Bash(ls:*)"]}}\n')
    settings.chmod(0o640)
    return proj


def test_uninstall_leaves_the_project_identical_to_before(three_server_project):
    proj = three_server_project
    before = _snapshot(proj)
    assert install("claude-code", "--project", str(proj), "--bundle", str(POLICY)) == 0
    assert install("claude-code", "--project", str(proj), "--bundle", str(POLICY)) == 0  # reinstall is harmless
    assert _snapshot(proj) != before
    assert main(["uninstall", "claude-code", "--project", str(proj)]) == 0
    assert _snapshot(proj) == before


def test_uninstall_removes_files_and_directories_the_install_created(tmp_path):
    (tmp_path / ".mcp.json").write_text('{"mcpServers": {}}')
    before = _snapshot(tmp_path)
    assert install("claude-code", "--project", str(tmp_path), "--bundle", str(POLICY)) == 0
    assert (tmp_path / ".claude" / "settings.json").exists()
    assert main(["uninstall", "claude-code", "--project", str(tmp_path)]) == 0
    assert _snapshot(tmp_path) == before


def test_install_keeps_file_modes(three_server_project):
    assert install("claude-code", "--project", str(three_server_project), "--bundle", str(POLICY)) == 0
    assert (three_server_project / ".mcp.json").stat().st_mode & 0o777 == 0o664
    assert (three_server_project / ".claude" / "settings.json").stat().st_mode & 0o777 == 0o640


def test_servers_keep_their_names_and_keys_sse_is_fronted_and_unfrontable_ones_are_left_alone(three_server_project, capsys):
    before = json.loads((three_server_project / ".mcp.json").read_text())["mcpServers"]
    assert install("claude-code", "--project", str(three_server_project), "--bundle", str(POLICY)) == 0
    servers = json.loads((three_server_project / ".mcp.json").read_text())["mcpServers"]
    assert list(servers) == ["filesystem", "events", "api"]
    fs = servers["filesystem"]
    assert fs["env"] == {"A": "1"} and fs["cwd"] == "sub" and fs["x-custom"] == [1, 2]
    assert "--name" in fs["args"] and fs["args"][fs["args"].index("--name") + 1] == "filesystem"
    events = servers["events"]  # SSE is fronted like streamable HTTP, its headers passed on
    assert events["type"] == "stdio" and events["args"][-6:] == [
        "--url", "http://127.0.0.1:9/sse", "--transport", "sse", "--header", "X-K: v"]
    assert servers["api"] == before["api"]
    out = capsys.readouterr().out
    assert "events: left as it is" not in out
    assert "api: left as it is because its headers come from a headersHelper" in out


def test_managed_install_goes_where_the_env_says_and_uninstall_removes_it(claude_project, tmp_path, monkeypatch):
    managed = tmp_path / "etc" / "claude-code"
    monkeypatch.setenv("CORDUM_CLAUDE_MANAGED_DIR", str(managed))
    assert install("claude-code", "--managed", "--project", str(claude_project), "--bundle", str(POLICY)) == 0
    assert set(json.loads((managed / "managed-mcp.json").read_text())["mcpServers"]) == {"filesystem", "remote"}
    assert "PreToolUse" in json.loads((managed / "managed-settings.json").read_text())["hooks"]
    assert main(["uninstall", "claude-code", "--managed"]) == 0
    assert not (tmp_path / "etc").exists()


def test_hook_blocks_with_exit_2_when_the_sidecar_is_missing(tmp_path):
    import subprocess

    (tmp_path / ".mcp.json").write_text('{"mcpServers": {}}')
    assert main(["install", "claude-code", "--project", str(tmp_path), "--bundle", str(POLICY),
                 "--sidecar-command", str(tmp_path / "gone" / "cordum-sidecar")]) == 0
    settings = json.loads((tmp_path / ".claude" / "settings.json").read_text())
    command = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    proc = subprocess.run(["sh", "-c", command], input='{"hook_event_name": "PreToolUse"}', capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2
    assert "could not run" in proc.stderr and "fail closed" in proc.stderr


def test_cursor_hook_denies_when_the_sidecar_is_missing(tmp_path):
    import subprocess

    (tmp_path / ".cursor").mkdir()
    (tmp_path / ".cursor" / "mcp.json").write_text('{"mcpServers": {}}')
    assert main(["install", "cursor", "--project", str(tmp_path), "--bundle", str(POLICY),
                 "--sidecar-command", str(tmp_path / "gone" / "cordum-sidecar")]) == 0
    hooks = json.loads((tmp_path / ".cursor" / "hooks.json").read_text())["hooks"]
    proc = subprocess.run(["sh", "-c", hooks["beforeShellExecution"][0]["command"]],
                          input='{"hook_event_name": "beforeShellExecution", "command": "ls"}',
                          capture_output=True, text=True, timeout=30)
    assert json.loads(proc.stdout)["permission"] == "deny"


def test_hook_command_names_the_sidecar_by_absolute_path(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "cordum-sidecar"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    (tmp_path / ".mcp.json").write_text('{"mcpServers": {}}')
    assert main(["install", "claude-code", "--project", str(tmp_path), "--bundle", str(POLICY)]) == 0
    settings = json.loads((tmp_path / ".claude" / "settings.json").read_text())
    command = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    assert shlex.split(command)[0] == str(exe)


@pytest.mark.anyio
@pytest.mark.slow
async def test_the_rewritten_entry_launches_a_working_sidecar(claude_project):
    from mcp.client.stdio import StdioServerParameters

    install("claude-code", "--project", str(claude_project), "--bundle", str(POLICY))
    entry = json.loads((claude_project / ".mcp.json").read_text())["mcpServers"]["filesystem"]
    params = StdioServerParameters(command=entry["command"], args=entry["args"], cwd=str(claude_project),
                                   env={**entry.get("env", {}), "PYTHONPATH": str(REPO),
                                        "CORDUM_SIDECAR_SPOOL": str(claude_project.parent / "spool.db")})
    async with mcp_session(params) as s:
        result = await s.call_tool("read_text_file", {"path": str(claude_project / "README.md")})
    assert text_of(result) == "hi\n"


@pytest.fixture
def anyio_backend():
    return "asyncio"
