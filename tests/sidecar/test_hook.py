"""`cordum-sidecar hook` answers Claude Code PreToolUse and Cursor hook events with the same policy."""

from __future__ import annotations

import json
import subprocess

import pytest

from cordum.policy import Call, compile_policy, evaluate, load_policy_file
from cordum.sidecar.spool import Spool

from .conftest import POLICY, PYTHON, sidecar_env, write_config


def run_hook(event, tmp_path, *extra: str, config=None) -> dict:
    args = [PYTHON, "-m", "cordum.sidecar", "hook", *(["--config", str(config)] if config else
                                                        ["--bundle", str(POLICY), "--spool", str(tmp_path / "spool.db")]),
            *extra]
    raw = event if isinstance(event, bytes) else json.dumps(event).encode()
    proc = subprocess.run(args, input=raw, capture_output=True, env=sidecar_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.count(b"\n") == 1  # exactly one JSON answer on stdout, logs on stderr
    return json.loads(proc.stdout)


def claude(tool_name: str, tool_input: dict, cwd: str = "/work/project") -> dict:
    return {"session_id": "abc123", "transcript_path": "/tmp/t.jsonl", "cwd": cwd, "hook_event_name": "PreToolUse",
            "tool_name": tool_name, "tool_input": tool_input, "tool_use_id": "toolu_1"}


def decision_of(answer: dict) -> tuple[str, str]:
    out = answer["hookSpecificOutput"]
    assert out["hookEventName"] == "PreToolUse"
    return out["permissionDecision"], out["permissionDecisionReason"]


def test_claude_code_bash_destroy_is_denied_with_the_rule(tmp_path):
    decision, reason = decision_of(run_hook(claude("Bash", {"command": "rm -rf /"}), tmp_path))
    assert decision == "deny"
    assert reason.startswith("Denied by Cordum policy rule deny-destroy: Destructive commands are blocked")


def test_claude_code_read_of_env_is_denied_and_a_plain_read_allowed(tmp_path):
    assert decision_of(run_hook(claude("Read", {"file_path": "/work/project/.env"}), tmp_path))[0] == "deny"
    decision, reason = decision_of(run_hook(claude("Read", {"file_path": "/work/project/app.py"}), tmp_path))
    assert decision == "allow" and "allow-code-read" in reason


def test_claude_code_edit_outside_the_project_is_denied_and_inside_allowed(tmp_path):
    outside = decision_of(run_hook(claude("Edit", {"file_path": "/etc/passwd", "old_string": "a", "new_string": "b"},
                                          cwd=str(tmp_path)), tmp_path))
    inside = decision_of(run_hook(claude("Write", {"file_path": str(tmp_path / "x.py"), "content": "print(1)"},
                                         cwd=str(tmp_path)), tmp_path))
    assert outside[0] == "deny" and "deny-edit-outside-project" in outside[1]
    assert inside[0] == "allow"
    # Each evidence record names the working root it was decided against (a simulation replays it exactly).
    assert [r["root"] for r in Spool(tmp_path / "spool.db").records()] == [str(tmp_path)] * 2


def test_claude_code_mcp_tools_keep_their_server_and_tool_names(tmp_path):
    event = claude("mcp__filesystem__read_text_file", {"path": "/work/project/.env"})
    assert decision_of(run_hook(event, tmp_path))[0] == "deny"
    [record] = Spool(tmp_path / "spool.db").records()
    assert (record["server"], record["tool"], record["rule"]) == ("filesystem", "read_text_file", "deny-secrets-access")
    assert record["session_id"] == "sess_abc123" and record["outcome"] == "blocked"


def test_offline_a_call_needing_approval_is_denied_unless_the_policy_lets_the_owner_approve(tmp_path):
    """The person at the terminal is the agent's owner: asking them is self-approval."""
    decision, reason = decision_of(run_hook(claude("Bash", {"command": "git push origin main"}), tmp_path))
    assert decision == "deny" and "approve-git-push" in reason and "no control plane to ask" in reason
    [record] = Spool(tmp_path / "spool.db").records()
    assert record["outcome"] == "denied"

    self_approvable = tmp_path / "self.yaml"
    self_approvable.write_text(POLICY.read_text().replace(
        "defaults:\n  decision: deny\n", "defaults:\n  decision: deny\n  approval: {allow_self_approval: true}\n", 1))
    config = write_config(tmp_path / "sidecar.yaml", bundle=str(self_approvable), spool=str(tmp_path / "s2.db"))
    decision, _ = decision_of(run_hook(claude("Bash", {"command": "git push"}), tmp_path, config=config))
    assert decision == "ask"
    decided, outcome = Spool(tmp_path / "s2.db").records()
    assert decided["decision"] == "require_approval" and outcome["decision_id"] == decided["decision_id"]
    assert outcome["outcome"] == "timed_out" and "person at the terminal" in outcome["comment"]


def test_the_hook_can_be_configured_to_ask_or_deny_whatever_the_policy_says(tmp_path):
    for setting in ("ask", "deny"):
        config = write_config(tmp_path / f"{setting}.yaml", bundle=str(POLICY), spool=str(tmp_path / f"{setting}.db"),
                              hook={"on_approval_timeout": setting})
        decision, _ = decision_of(run_hook(claude("Bash", {"command": "git push"}), tmp_path, config=config))
        assert decision == setting


def _config_with_signed_bundle(tmp_path, policy, control_plane):
    """A sidecar.yaml for the hook: `policy` as a signed bundle it trusts, the test control plane for approvals."""
    from cordum.sidecar.bundles import BundleStore, generate_keypair, key_id_for

    from .test_proxy import _signed_bundle

    private, public = generate_keypair()
    key_id = key_id_for(public)
    BundleStore(tmp_path / "bundle.json").save(_signed_bundle(private, key_id, policy_path=policy))
    return write_config(tmp_path / "sidecar.yaml", control_plane=control_plane.url, token_env="CORDUM_TEST_TOKEN",
                        spool=str(tmp_path / "spool.db"), bundle_store=str(tmp_path / "bundle.json"),
                        trusted_keys={key_id: public}, approvals={"poll_wait_seconds": 1})


def test_claude_code_hook_with_a_control_plane_waits_for_the_reviewer(tmp_path, control_plane):
    config = _config_with_signed_bundle(tmp_path, POLICY, control_plane)
    control_plane.auto_decide = ("approved", "alice@example.com")
    args = [PYTHON, "-m", "cordum.sidecar", "hook", "--config", str(config)]
    proc = subprocess.run(args, input=json.dumps(claude("Bash", {"command": "git push origin main"})).encode(),
                          capture_output=True, env=sidecar_env(CORDUM_TEST_TOKEN="cdm_agent_x"), timeout=60)
    decision, reason = decision_of(json.loads(proc.stdout))
    assert decision == "allow" and reason.startswith("Approved by alice@example.com")
    [request] = control_plane.approval_requests
    assert control_plane.consumed[0]["args_digest"] == request["args_digest"]
    assert control_plane.stored[request["decision_id"]]["outcome"] == "approved"  # evidence uploaded
    # Claude Code ran the push and reports it; the next hook call uploads the outcome with its own record
    post = {**claude("Bash", {"command": "git push origin main"}), "hook_event_name": "PostToolUse",
            "tool_response": {"stdout": "To origin\n   1a2b3c4..5d6e7f8  main -> main"}}
    for event in (post, claude("Read", {"file_path": "/work/project/README.md"})):
        subprocess.run(args, input=json.dumps(event).encode(), capture_output=True,
                       env=sidecar_env(CORDUM_TEST_TOKEN="cdm_agent_x"), timeout=60, check=True)
    assert control_plane.stored[f"{request['decision_id']}:executed"]["outcome"] == "executed"


def test_claude_code_hook_allows_an_expired_approval_when_the_policy_says_on_timeout_allow(tmp_path, control_plane):
    policy = tmp_path / "safety.yaml"  # a 30 s timeout fits inside the hook's 50 s wait
    policy.write_text(POLICY.read_text().replace(
        "defaults:\n  decision: deny\n", "defaults:\n  decision: deny\n  approval: {timeout: 30s, on_timeout: allow}\n", 1))
    config = _config_with_signed_bundle(tmp_path, policy, control_plane)
    control_plane.auto_decide = ("expired", None)  # the control plane expired the request
    args = [PYTHON, "-m", "cordum.sidecar", "hook", "--config", str(config)]
    proc = subprocess.run(args, input=json.dumps(claude("Bash", {"command": "git push origin main"})).encode(),
                          capture_output=True, env=sidecar_env(CORDUM_TEST_TOKEN="cdm_agent_x"), timeout=60)
    decision, reason = decision_of(json.loads(proc.stdout))
    assert decision == "allow" and "on_timeout: allow" in reason
    [request] = control_plane.approval_requests
    assert request["on_timeout"] == "allow" and control_plane.consumed == []
    assert f"{request['decision_id']}:allowed_on_timeout" in control_plane.stored


def _post(pre: dict, event: str = "PostToolUse", **extra) -> dict:
    return {**pre, "hook_event_name": event, **extra}


@pytest.mark.parametrize("with_tool_use_id", [True, False])
def test_post_tool_events_record_whether_an_allowed_call_ran(tmp_path, with_tool_use_id):
    read = claude("Read", {"file_path": "/work/project/src/app.py"})
    listing = claude("Read", {"file_path": "/work/project/src/other.py"})
    if not with_tool_use_id:  # older agents: the call is paired by session, tool and arguments
        read.pop("tool_use_id"), listing.pop("tool_use_id")
    else:
        listing["tool_use_id"] = "toolu_2"
    assert decision_of(run_hook(read, tmp_path))[0] == "allow"
    assert decision_of(run_hook(listing, tmp_path))[0] == "allow"

    assert run_hook(_post(read, tool_response={"content": "print(1)"}), tmp_path) == {}
    assert run_hook(_post(listing, "PostToolUseFailure", error="File does not exist."), tmp_path) == {}
    assert run_hook(_post(read, tool_response={}), tmp_path) == {}  # reported twice: recorded once

    records = Spool(tmp_path / "spool.db").records()
    decisions = {r["decision_id"]: r for r in records if r["record_type"] == "decision"}
    outcomes = [(decisions[r["decision_id"]]["args"]["file_path"], r["outcome"], r["error"])
                for r in records if r["record_type"] == "outcome"]
    assert outcomes == [("/work/project/src/app.py", "executed", ""),
                        ("/work/project/src/other.py", "failed", "File does not exist.")]


def test_a_post_tool_event_for_a_denied_or_unknown_call_records_nothing(tmp_path):
    secret = claude("Read", {"file_path": "/work/project/.env"})
    assert decision_of(run_hook(secret, tmp_path))[0] == "deny"
    assert run_hook(_post(secret, tool_response={}), tmp_path) == {}
    assert run_hook(_post(claude("Read", {"file_path": "/elsewhere"}), tool_response={}), tmp_path) == {}
    assert [r["record_type"] for r in Spool(tmp_path / "spool.db").records()] == ["decision"]
    # a malformed post-tool event is not a call to deny (it already ran): an empty answer, nothing recorded
    assert run_hook({"hook_event_name": "PostToolUse", "session_id": "abc123"}, tmp_path) == {}


def test_a_malformed_event_is_denied(tmp_path):
    decision, reason = decision_of(run_hook(b"not json", tmp_path))
    assert decision == "deny" and "fail closed" in reason


def test_other_claude_events_get_an_empty_answer(tmp_path):
    assert run_hook({"hook_event_name": "SessionStart", "session_id": "x"}, tmp_path) == {}


def cursor(event: str, **fields) -> dict:
    return {"hook_event_name": event, "conversation_id": "conv-1", "generation_id": "gen-1",
            "workspace_roots": ["/work/project"], **fields}


def test_cursor_shell_commands_are_governed(tmp_path):
    denied = run_hook(cursor("beforeShellExecution", command="terraform destroy -auto-approve", cwd="/work/project"),
                      tmp_path, "--agent-format", "cursor")
    allowed = run_hook(cursor("beforeShellExecution", command="ls -la", cwd="/work/project"), tmp_path,
                       "--agent-format", "cursor")
    assert denied["permission"] == "deny" and "deny-destroy" in denied["user_message"]
    assert denied["agent_message"] == denied["user_message"]
    assert allowed == {"permission": "allow"}


def test_a_cursor_http_server_keeps_the_name_it_has_in_mcp_json(tmp_path):
    project = tmp_path / "proj"
    (project / ".cursor").mkdir(parents=True)
    (project / ".cursor" / "mcp.json").write_text(json.dumps(
        {"mcpServers": {"filesystem": {"url": "https://tools.example.com/mcp"}}}))
    event = {**cursor("beforeMCPExecution", tool_name="read_text_file", tool_input=json.dumps({"path": "a.py"}),
                      url="https://tools.example.com/mcp"), "workspace_roots": [str(project)]}
    run_hook(event, tmp_path, "--agent-format", "cursor")
    [record] = Spool(tmp_path / "spool.db").records()
    assert record["server"] == "filesystem"  # not "tools.example.com"


def test_cursor_file_reads_and_mcp_calls_are_governed(tmp_path):
    secret = run_hook(cursor("beforeReadFile", file_path="/work/project/.env", content="SECRET=1"), tmp_path,
                      "--agent-format", "cursor")
    assert secret == {"permission": "deny"}
    mcp = run_hook(cursor("beforeMCPExecution", tool_name="read_text_file",
                          tool_input=json.dumps({"path": "/work/project/a.py"}),
                          command="npx -y @modelcontextprotocol/server-filesystem ."), tmp_path,
                   "--agent-format", "cursor")
    assert mcp == {"permission": "allow"}
    push = run_hook(cursor("beforeShellExecution", command="git push", cwd="/work/project"), tmp_path,
                    "--agent-format", "cursor")
    assert push["permission"] == "deny"  # needs a reviewer; offline, and the owner may not approve it
    records = Spool(tmp_path / "spool.db").records()
    assert [(r["server"], r["tool"]) for r in records] == [("claude-code", "Read"),
                                                            ("filesystem", "read_text_file"), ("claude-code", "Bash")]
    assert all("content" not in r["args"] for r in records)  # the file's content never enters evidence


def test_cursor_after_events_close_the_calls_it_let_run_and_report_edits_it_could_not_gate(tmp_path):
    ls = cursor("beforeShellExecution", command="ls -la", cwd="/work/project")
    read = cursor("beforeMCPExecution", tool_name="read_text_file", tool_input=json.dumps({"path": "/work/project/a.py"}),
                  command="npx -y @modelcontextprotocol/server-filesystem .")
    assert run_hook(ls, tmp_path, "--agent-format", "cursor") == {"permission": "allow"}
    assert run_hook(read, tmp_path, "--agent-format", "cursor") == {"permission": "allow"}
    assert run_hook(dict(ls, hook_event_name="afterShellExecution", output="README.md"), tmp_path,
                    "--agent-format", "cursor") == {}
    assert run_hook(dict(read, hook_event_name="afterMCPExecution",
                         result_json=json.dumps({"content": [], "isError": True})), tmp_path,
                    "--agent-format", "cursor") == {}
    edit_args = {"file_path": "/work/project/.env", "edits": [{"old_string": "A=1", "new_string": "A=2"}]}
    edit = cursor("afterFileEdit", **edit_args)
    assert run_hook(edit, tmp_path, "--agent-format", "cursor") == {}
    records = Spool(tmp_path / "spool.db").records()
    decisions = {r["tool"]: r for r in records if r["record_type"] == "decision"}
    outcomes = {r["decision_id"]: r["outcome"] for r in records if r["record_type"] == "outcome"}

    def final(record):
        return record.get("outcome") or outcomes.get(record["decision_id"])

    assert final(decisions["Bash"]) == "executed" and final(decisions["read_text_file"]) == "failed"
    reported = decisions["Edit"]  # what the policy says of it, in shadow mode, and that it ran
    would = evaluate(compile_policy(load_policy_file(POLICY).policy),
                     Call(server="claude-code", tool="Edit", arguments=edit_args, root="/work/project"))
    assert reported["mode"] == "shadow" and reported["decision"] == would.decision and final(reported) == "executed"


@pytest.mark.parametrize("fmt", ["claude-code", "cursor"])
def test_no_policy_means_deny(tmp_path, fmt):
    config = write_config(tmp_path / "sidecar.yaml", spool=str(tmp_path / "spool.db"))
    event = claude("Read", {"file_path": "/x"}) if fmt == "claude-code" else cursor("beforeShellExecution", command="ls")
    answer = run_hook(event, tmp_path, "--agent-format", fmt, config=config)
    if fmt == "cursor":
        assert answer["permission"] == "deny" and "no policy configured" in answer["user_message"]
    else:
        assert decision_of(answer)[0] == "deny"


TEMPLATE = POLICY.parents[3] / "policies_repo_template" / "safety.yaml"


@pytest.mark.parametrize(("command", "expected", "rule"), [
    ("git push origin main", "deny", "approve-git-push"),  # needs a reviewer; offline, the owner may not approve
    ("terraform destroy -auto-approve", "deny", "deny-infra-destroy"),
    ("cat .env", "deny", "deny-secrets-access"),
    ("ls -la", "allow", "allow-code-read"),  # read-only commands run without a prompt
    ("python3 --version", "allow", "allow-code-read"),
    ("pytest -q", "ask", "approve-shell"),  # other commands: offline, the developer at the terminal confirms
])
def test_the_policy_templates_tool_map_governs_claude_code_bash(tmp_path, command, expected, rule):
    answer = subprocess.run(
        [PYTHON, "-m", "cordum.sidecar", "hook", "--bundle", str(TEMPLATE), "--spool", str(tmp_path / "s.db")],
        input=json.dumps(claude("Bash", {"command": command})).encode(), capture_output=True, env=sidecar_env(),
        timeout=60)
    decision, reason = decision_of(json.loads(answer.stdout))
    assert decision == expected
    record = Spool(tmp_path / "s.db").records()[0]  # the decision (an offline ask adds its outcome record)
    assert (record["rule"] or "defaults.decision") == rule, reason


@pytest.mark.parametrize("template", [False, True])
def test_a_held_edit_sends_the_reviewer_a_diff_even_when_the_evidence_redacts_the_text(tmp_path, control_plane,
                                                                                          template):
    if template:  # the template redacts old_string/new_string in evidence; the reviewer still sees the diff
        policy = TEMPLATE
    else:
        policy = tmp_path / "review-writes.yaml"
        policy.write_text(POLICY.read_text().replace(
            "decision: allow\n    reason: \"Writes inside the project are fine in this test policy\"",
            "decision: require_approval\n    reason: \"Writes need review\""))
    config = _config_with_signed_bundle(tmp_path, policy, control_plane)
    control_plane.auto_decide = ("approved", "alice@example.com")
    source = tmp_path / "login.ts"
    source.write_text("const ok = false;\n")
    event = claude("Edit", {"file_path": str(source), "old_string": "false", "new_string": "true"}, cwd=str(tmp_path))
    proc = subprocess.run([PYTHON, "-m", "cordum.sidecar", "hook", "--config", str(config)],
                          input=json.dumps(event).encode(), capture_output=True,
                          env=sidecar_env(CORDUM_TEST_TOKEN="cdm_agent_x"), timeout=60)
    assert decision_of(json.loads(proc.stdout))[0] == "allow"
    [request] = control_plane.approval_requests
    assert "-const ok = false;" in request["diff"] and "+const ok = true;" in request["diff"]
    if template:
        assert request["rule"] == "approve-code-write" and request["args"]["new_string"] == "[REDACTED]"

def test_a_tool_the_map_does_not_know_is_asked_about_naming_the_tool(tmp_path):
    answer = subprocess.run(
        [PYTHON, "-m", "cordum.sidecar", "hook", "--bundle", str(TEMPLATE), "--spool", str(tmp_path / "s.db")],
        input=json.dumps(claude("FrobnicateRepo", {"depth": 3})).encode(), capture_output=True, env=sidecar_env(),
        timeout=60)
    decision, reason = decision_of(json.loads(answer.stdout))
    assert decision == "ask"
    assert "unmapped tool FrobnicateRepo of claude-code: add it to the tool map" in reason
    record, handed_off = Spool(tmp_path / "s.db").records()
    assert record["decision"] == "require_approval" and record["rule"] is None
    # the terminal's answer never reaches a hook: the hand-off is on record, so the decision is closed
    assert handed_off["record_type"] == "outcome" and handed_off["outcome"] == "unknown"
    assert handed_off["decision_id"] == record["decision_id"] and "person at the terminal" in handed_off["comment"]


def test_an_mcp_call_to_a_server_behind_the_sidecar_is_left_to_the_sidecar_and_recorded_once(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / ".mcp.json").write_text(json.dumps({"mcpServers": {
        "files": {"command": "cordum-sidecar", "args": ["run", "--bundle", "safety.yaml", "--name", "files", "--",
                                                        "npx", "@modelcontextprotocol/server-filesystem", "."]},
        "plain": {"command": "npx", "args": ["some-server"]}}}))

    def hook(tool_name):
        event = dict(claude(tool_name, {"path": ".env"}), cwd=str(project))
        done = subprocess.run([PYTHON, "-m", "cordum.sidecar", "hook", "--bundle", str(TEMPLATE), "--spool",
                               str(tmp_path / "s.db")], input=json.dumps(event).encode(), capture_output=True,
                              env=sidecar_env(), timeout=60)
        return decision_of(json.loads(done.stdout))

    assert hook("mcp__files__read_text_file")[0] == "allow"  # the sidecar in front decides (and denies .env)
    assert hook("mcp__cordum__filesystem__read_text_file")[0] == "allow"  # the HTTP sidecar the docs name cordum
    assert hook("mcp__plain__read_text_file")[0] == "ask"  # not behind a sidecar: the hook decides
    assert [r["server"] for r in Spool(tmp_path / "s.db").records() if r["record_type"] == "decision"] == ["plain"]
