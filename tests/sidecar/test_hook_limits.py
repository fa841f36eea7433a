"""The hook (one process per tool event) enforces the policy's `limits:` like the proxy: a session's counters
are kept in the spool across hook processes and decided by `LimitsTracker.check`."""

from __future__ import annotations

import json
import subprocess
import time

from cordum.sidecar.spool import HOOK_SESSION_IDLE_SECONDS, Spool

from .conftest import POLICY, PYTHON, sidecar_env
from .test_hook import claude, decision_of


def policy_with_limits(tmp_path, limits: str):
    path = tmp_path / "safety.yaml"
    path.write_text(POLICY.read_text() + "limits:\n" + limits)
    return path


def hook_args(policy, tmp_path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "cordum.sidecar", "hook", "--bundle", str(policy), "--spool", str(tmp_path / "spool.db"),
            *extra]


def run_hook(event: dict, policy, tmp_path, *extra: str) -> dict:
    proc = subprocess.run(hook_args(policy, tmp_path, *extra), input=json.dumps(event).encode(), capture_output=True,
                          env=sidecar_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def read(session: str) -> dict:
    return dict(claude("Read", {"file_path": "/work/project/app.py"}), session_id=session)


def write(session: str, root) -> dict:
    return dict(claude("Write", {"file_path": str(root / "x.py"), "content": "print(1)"}, cwd=str(root)),
                session_id=session)


def test_hook_session_max_calls_denies_the_third_call_of_a_session_and_leaves_other_sessions_alone(tmp_path):
    policy = policy_with_limits(tmp_path, "  session: {max_calls: 2}\n")
    answers = [decision_of(run_hook(read("s1"), policy, tmp_path)) for _ in range(3)]
    assert [d for d, _ in answers] == ["allow", "allow", "deny"]
    assert answers[2][1].startswith("Denied by Cordum policy rule limits.session.max_calls: Session limit reached: "
                                    "at most 2 tool calls per session (max_calls)")
    assert decision_of(run_hook(read("s2"), policy, tmp_path))[0] == "allow"
    # one evidence record per event; the limit denial is recorded under the limit rule, blocked
    records = Spool(tmp_path / "spool.db").records()
    assert [(r["session_id"], r["decision"], r["rule"]) for r in records] == [
        ("sess_s1", "allow", "allow-code-read"), ("sess_s1", "allow", "allow-code-read"),
        ("sess_s1", "deny", "limits.session.max_calls"), ("sess_s2", "allow", "allow-code-read")]
    assert records[2]["outcome"] == "blocked"
    stored = Spool(tmp_path / "spool.db").hook_sessions()
    assert {k: v.counters["calls"] for k, v in stored.items()} == {"sess_s1": 2, "sess_s2": 1}


def test_hook_calls_the_policy_denies_do_not_use_up_the_session_limit(tmp_path):
    policy = policy_with_limits(tmp_path, "  session: {max_calls: 1}\n")
    denied = decision_of(run_hook(dict(claude("Bash", {"command": "rm -rf /"}), session_id="s"), policy, tmp_path))
    assert denied[0] == "deny" and "deny-destroy" in denied[1]
    assert decision_of(run_hook(read("s"), policy, tmp_path))[0] == "allow"
    assert "limits.session.max_calls" in decision_of(run_hook(read("s"), policy, tmp_path))[1]


def test_hook_session_max_writes_denies_the_second_write_but_not_reads(tmp_path):
    policy = policy_with_limits(tmp_path, "  session: {max_writes: 1}\n")
    assert decision_of(run_hook(write("w", tmp_path), policy, tmp_path))[0] == "allow"
    decision, reason = decision_of(run_hook(write("w", tmp_path), policy, tmp_path))
    assert decision == "deny" and reason.startswith("Denied by Cordum policy rule limits.session.max_writes:")
    assert decision_of(run_hook(read("w"), policy, tmp_path))[0] == "allow"


def test_hook_per_rule_limit_is_counted_across_hook_processes(tmp_path):
    policy = tmp_path / "safety.yaml"
    policy.write_text(POLICY.read_text().replace(
        '    reason: "File reads, git log, ls are safe"\n',
        '    reason: "File reads, git log, ls are safe"\n    limits: {max_calls: 1}\n', 1))
    assert decision_of(run_hook(read("r"), policy, tmp_path))[0] == "allow"
    decision, reason = decision_of(run_hook(read("r"), policy, tmp_path))
    assert decision == "deny" and "limits.rule.allow-code-read.max_calls" in reason


def test_cursor_conversations_are_hook_sessions_too(tmp_path):
    policy = policy_with_limits(tmp_path, "  session: {max_calls: 1}\n")
    event = {"hook_event_name": "beforeShellExecution", "conversation_id": "conv-9", "command": "ls",
             "cwd": "/work/project", "workspace_roots": ["/work/project"]}
    assert run_hook(event, policy, tmp_path, "--agent-format", "cursor")["permission"] == "allow"
    second = run_hook(event, policy, tmp_path, "--agent-format", "cursor")
    assert second["permission"] == "deny" and "limits.session.max_calls" in second["agent_message"]


def test_concurrent_hook_processes_of_one_session_allow_exactly_max_calls(tmp_path):
    policy = policy_with_limits(tmp_path, "  session: {max_calls: 3}\n")
    # the spool (and its schema) exists before the burst, as it does after an agent's first tool call
    Spool(tmp_path / "spool.db", recover=False).close()
    procs = [subprocess.Popen(hook_args(policy, tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=sidecar_env()) for _ in range(6)]
    for p in procs:  # all six are running before any gets its event
        p.stdin.write(json.dumps(read("par")).encode())
    for p in procs:
        p.stdin.close()
    answers = []
    for p in procs:
        out, err = p.stdout.read(), p.stderr.read()  # the answer is one line; logs on stderr are a few lines
        assert p.wait(timeout=60) == 0, err.decode()
        answers.append(decision_of(json.loads(out)))
    assert sorted(d for d, _ in answers) == ["allow"] * 3 + ["deny"] * 3
    assert all("limits.session.max_calls" in r for d, r in answers if d == "deny")
    records = Spool(tmp_path / "spool.db").records()
    assert sorted(r["decision"] for r in records) == ["allow"] * 3 + ["deny"] * 3
    assert Spool(tmp_path / "spool.db").hook_sessions()["sess_par"].counters["calls"] == 3


def test_hook_session_counters_carry_over_a_policy_version_change(tmp_path):
    policy = policy_with_limits(tmp_path, "  session: {max_calls: 2}\n")
    assert [decision_of(run_hook(read("v"), policy, tmp_path))[0] for _ in range(2)] == ["allow", "allow"]
    first_version = Spool(tmp_path / "spool.db").hook_sessions()["sess_v"].policy_version
    policy.write_text(policy.read_text() + "# edited: a new policy version\n")
    decision, reason = decision_of(run_hook(read("v"), policy, tmp_path))
    assert decision == "deny" and "limits.session.max_calls" in reason
    assert first_version not in reason  # decided under the new version, with the session's earlier calls


def test_hook_sessions_idle_for_more_than_a_day_are_forgotten(tmp_path):
    policy = policy_with_limits(tmp_path, "  session: {max_calls: 5}\n")
    spool = Spool(tmp_path / "spool.db", recover=False)
    long_ago = time.time() - HOOK_SESSION_IDLE_SECONDS - 60
    with spool.hook_session("sess_old", policy_version="v0", now=long_ago) as session:
        session.counters = {"started": long_ago, "last_seen": long_ago, "calls": 5}
    spool.close()
    assert set(Spool(tmp_path / "spool.db").hook_sessions()) == {"sess_old"}
    assert decision_of(run_hook(read("new"), policy, tmp_path))[0] == "allow"
    assert set(Spool(tmp_path / "spool.db").hook_sessions()) == {"sess_new"}


def test_a_policy_without_limits_stores_no_hook_sessions(tmp_path):
    assert decision_of(run_hook(read("n"), POLICY, tmp_path))[0] == "allow"
    assert Spool(tmp_path / "spool.db").hook_sessions() == {}
