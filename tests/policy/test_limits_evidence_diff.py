"""Runtime limits, evidence redaction and digests, and the semantic diff."""

import dataclasses
import hashlib
import json
import textwrap

from cordum.policy import (
    Call,
    LimitsTracker,
    args_digest,
    compile_policy,
    diff_policies,
    evaluate,
    load_policy_text,
    redact_arguments,
    redact_target,
)


def compiled(text):
    r = load_policy_text(textwrap.dedent(text))
    assert r.ok, r.errors
    return compile_policy(r.policy, "t")


LIMITS = """\
    version: v1
    defaults: {decision: allow}
    rules:
      - id: writes
        match: {topics: ["job.mcp-bridge.write.*"]}
        decision: allow
        limits: {max_calls: 2}
    limits:
      session: {max_calls: 5, max_duration: 1h, max_writes: 3}
      rate: {per_minute: 4}
"""


def test_session_max_calls_denies_with_a_clear_reason():
    c = compiled(LIMITS.replace("per_minute: 4", "per_minute: 100"))
    t = LimitsTracker(c)
    read = evaluate(c, {"topic": "job.mcp-bridge.read.x"})
    assert [t.check("s1", read, now=float(i)) for i in range(5)] == [None] * 5
    denied = t.check("s1", read, now=10.0)
    assert denied.decision == "deny" and denied.rule == "limits.session.max_calls"
    assert "at most 5 tool calls per session" in denied.reason
    assert t.check("s2", read, now=10.0) is None  # sessions are independent


def test_rate_limit_uses_a_sliding_minute():
    c = compiled(LIMITS.replace("max_calls: 5", "max_calls: 100"))
    t = LimitsTracker(c)
    read = evaluate(c, {"topic": "job.mcp-bridge.read.x"})
    for i in range(4):
        assert t.check("s", read, now=100.0 + i) is None
    assert t.check("s", read, now=104.0).rule == "limits.rate.per_minute"
    assert t.check("s", read, now=160.5) is None


def test_max_writes_and_per_rule_limits():
    c = compiled(LIMITS.replace("max_calls: 5", "max_calls: 100").replace("per_minute: 4", "per_minute: 100"))
    t = LimitsTracker(c)
    write = evaluate(c, {"topic": "job.mcp-bridge.write.file", "risk_tags": ["code-change"]})
    assert write.is_write
    assert t.check("s", write, now=1.0) is None and t.check("s", write, now=2.0) is None
    assert t.check("s", write, now=3.0).rule == "limits.rule.writes.max_calls"
    other_write = dataclasses.replace(write, rule=None)
    assert t.check("s", other_write, now=4.0) is None
    assert t.check("s", other_write, now=5.0).rule == "limits.session.max_writes"


def test_max_duration_and_policy_denies_are_not_counted():
    c = compiled(LIMITS)
    t = LimitsTracker(c)
    read = evaluate(c, {"topic": "job.mcp-bridge.read.x"})
    deny = dataclasses.replace(read, decision="deny")
    assert t.check("s", deny, now=0.0) is None and t.snapshot("s")["calls"] == 0
    assert t.check("s", read, now=0.0) is None
    d = t.check("s", read, now=3601.0)
    assert d.rule == "limits.session.max_duration" and "1h" in d.reason


def test_args_digest_is_sha256_of_canonical_json():
    args = {"b": 1, "a": {"z": [1, 2], "y": "é"}}
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert args_digest(args) == "sha256:" + hashlib.sha256(canonical).hexdigest()
    assert args_digest({"a": {"y": "é", "z": [1, 2]}, "b": 1}) == args_digest(args)


def test_redaction_follows_the_policy_and_scans_secret_values(template):
    call = Call(server="filesystem", tool="write_file", arguments={
        "path": "src/a.py", "content": "print(1)", "headers": {"Authorization": "Bearer x", "GitHub_Token": "t"},
        "note": "key is AKIAABCDEFGHIJKLMNOP", "big": "x" * 5000, "n": 3,
    })
    out = redact_arguments(template, call)
    assert out["path"] == "src/a.py" and out["n"] == 3
    assert out["content"] == "[REDACTED]"
    assert out["headers"] == {"Authorization": "[REDACTED]", "GitHub_Token": "[REDACTED]"}
    assert out["note"] == "[REDACTED]"
    assert out["big"].startswith("x" * 4096) and out["big"].endswith("[truncated 904 bytes]")
    assert call.arguments["content"] == "print(1)"  # the original is untouched


def test_a_target_rendered_from_arguments_never_carries_what_the_arguments_redact(template):
    token = "ghp_" + "a1B2" * 9
    push = Call(server="claude-code", tool="Bash",
                arguments={"command": f"git push https://bob:{token}@github.com/acme/x.git main"})
    decision = evaluate(template, push)
    assert token in decision.target  # rules match on the real target...
    stored = redact_target(template, decision.target, push.arguments)
    assert token not in stored and "bob" not in stored  # ...evidence keeps its shape without the credential
    assert stored.startswith("git push [REDACTED: Password in URL]") and stored.endswith("github.com/acme/x.git main")
    curl = {"command": "curl -H 'Authorization: Bearer sk-" + "x" * 30 + "' https://api.example.com"}
    assert "sk-" not in redact_target(template, evaluate(template, Call("claude-code", "Bash", curl)).target, curl)
    # a value redacted by its key's name is hidden wherever the target shows it
    named = {"path": "notes.txt", "api_token": "tok-1234-secret"}
    assert redact_target(template, "upload tok-1234-secret to notes.txt", named) == "upload [REDACTED] to notes.txt"
    assert redact_target(template, "src/app.py", {"path": "src/app.py", "content": "x"}) == "src/app.py"
    env = {"command": "GITHUB_TOKEN=abcd1234 gh release create v1"}
    assert redact_target(template, env["command"], env) == "GITHUB_TOKEN=[REDACTED] gh release create v1"


def test_secure_redaction_defaults_without_an_evidence_section(brief):
    out = redact_arguments(brief, {"arguments": {"password": "p", "api_key": "k", "path": "a"}})
    assert out == {"password": "[REDACTED]", "api_key": "[REDACTED]", "path": "a"}


def test_diff_reports_rule_changes_field_by_field_and_moving_decisions(brief_policy):
    new_text = textwrap.dedent("""\
        version: v1
        defaults: {decision: deny, approval: {timeout: 30m}}
        rules:
          - id: allow-code-read
            match: {topics: ["job.mcp-bridge.read.*"]}
            decision: allow
            reason: "File reads, git log, ls are safe"
          - id: approve-code-write
            match: {topics: ["job.mcp-bridge.write.*"], risk_tags: ["code-change"]}
            decision: deny
            reason: "File writes need developer review"
          - id: deny-secrets-access
            match: {topics: ["job.mcp-bridge.read.env", "job.mcp-bridge.read.secrets"], risk_tags: ["credentials"]}
            decision: deny
            reason: "Direct secrets access blocked by policy"
          - id: allow-git-status
            match: {topics: ["job.mcp-bridge.git.status"]}
            decision: allow
        """)
    new = load_policy_text(new_text).policy
    calls = [
        Call(topic="job.mcp-bridge.write.file", risk_tags=("code-change",)),
        Call(topic="job.mcp-bridge.read.file"),
        Call(topic="job.mcp-bridge.git.status"),
    ]
    d = diff_policies(brief_policy, new, calls)
    out = d.to_dict()
    assert [r["id"] for r in out["rules"]["added"]] == ["allow-git-status"]
    assert [r["id"] for r in out["rules"]["removed"]] == ["approve-git-push", "deny-infra-destroy"]
    assert out["rules"]["changed"] == [
        {"id": "approve-code-write", "changes": [{"field": "decision", "before": "require_approval", "after": "deny"}]}
    ]
    assert out["defaults"] == [{"field": "approval.timeout", "before": 900, "after": 1800}]
    moved = {m["topic"]: (m["before"], m["after"]) for m in out["decisions"]["moved"]}
    assert moved == {
        "job.mcp-bridge.write.file": ({"decision": "require_approval", "rule": "approve-code-write"},
                                      {"decision": "deny", "rule": "approve-code-write"}),
        "job.mcp-bridge.git.status": ({"decision": "deny", "rule": None}, {"decision": "allow", "rule": "allow-git-status"}),
    }
    text = d.to_text()
    assert "+ rule allow-git-status" in text and "decision: 'require_approval' -> 'deny'" in text
    assert "decisions: 2 of 3 calls move" in text
    json.dumps(out)


def test_diff_of_identical_policies_is_empty(template_policy):
    d = diff_policies(template_policy, template_policy, [Call(server="git", tool="git_status")])
    assert d.empty and d.to_text().startswith("no policy changes")


def test_session_counters_export_and_import_round_trip_through_json():
    c = compiled(LIMITS.replace("per_minute: 4", "per_minute: 3"))
    first = LimitsTracker(c)
    read = evaluate(c, {"topic": "job.mcp-bridge.read.x"})
    write = evaluate(c, {"topic": "job.mcp-bridge.write.file", "risk_tags": ["code-change"]})
    assert first.check("s", read, now=0.0) is None
    assert first.check("s", write, now=100.0) is None and first.check("s", write, now=101.0) is None
    exported = first.export_session("s", now=102.0)
    assert exported["recent"] == [100.0, 101.0]  # the call at 0.0 no longer counts towards per_minute
    assert exported == {"started": 0.0, "last_seen": 101.0, "calls": 3, "writes": 2, "recent": [100.0, 101.0],
                        "rule_calls": {"writes": 2}, "rule_recent": {"writes": [100.0, 101.0]}}
    assert first.export_session("unknown") is None

    second = LimitsTracker(c)  # e.g. the next hook process
    second.import_session("s", json.loads(json.dumps(exported)))
    assert second.export_session("s") == exported
    assert second.check("s", write, now=103.0).rule == "limits.rule.writes.max_calls"
    assert second.check("s", read, now=104.0) is None  # the 3rd call within a minute
    assert second.check("s", read, now=105.0).rule == "limits.rate.per_minute"
    assert second.check("s", read, now=3601.0).rule == "limits.session.max_duration"  # started at 0.0
    assert second.check("other", read, now=3601.0) is None


def test_importing_something_that_is_not_session_counters_is_refused():
    t = LimitsTracker(compiled(LIMITS))
    for bad in ({}, {"started": "x", "last_seen": 1.0}, {"started": 1.0, "last_seen": 1.0, "recent": 5}):
        try:
            t.import_session("s", bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")
    assert t.export_session("s") is None


def test_has_limits_is_false_only_for_a_policy_without_any_limit():
    assert LimitsTracker(compiled(LIMITS)).has_limits
    assert not LimitsTracker(compiled("version: v1\ndefaults: {decision: allow}\n")).has_limits


def test_a_new_policy_version_goes_on_counting_the_sessions_of_the_one_it_replaces():
    old = compiled(LIMITS.replace("per_minute: 4", "per_minute: 100"))
    new = compiled(LIMITS.replace("per_minute: 4", "per_minute: 100").replace("max_calls: 5", "max_calls: 6"))
    before, after = LimitsTracker(old), LimitsTracker(new)
    read = evaluate(old, {"topic": "job.mcp-bridge.read.x"})
    assert [before.check("s1", read, now=float(i)) for i in range(5)] == [None] * 5
    after.carry_over(before)
    assert after.check("s1", read, now=6.0) is None  # the 6th call: within the new version's limit of 6
    assert after.check("s1", read, now=7.0).rule == "limits.session.max_calls"
    assert after.snapshot("s2")["calls"] == 0 and before.snapshot("s1")["calls"] == 5  # copies, not shared
