"""safety.yaml's approval scopes: `session_approval` (the bound on "approve for this session") and
`approvals_required` (the two-person rule), per rule or in defaults, validated with file:line:col."""

import textwrap

from cordum.policy import compile_policy, evaluate, load_policy_text, policy_from_dict

POLICY = """\
version: v1
defaults:
  decision: deny
  approval: {timeout: 15m, session_approval: {max_calls: 20, max_minutes: 60}}
rules:
  - id: approve-writes
    match: {topics: ["job.mcp-bridge.fs.write_file"]}
    decision: require_approval
  - id: approve-prod-deploys
    match: {topics: ["job.mcp-bridge.git.git_push"]}
    decision: require_approval
    approval: {approvals_required: 2, session_approval: false}
"""


def load(text):
    return load_policy_text(textwrap.dedent(text), filename="safety.yaml")


def approval_of(compiled, server, tool):
    return evaluate(compiled, {"server": server, "tool": tool, "arguments": {}}).approval


def test_rules_inherit_the_default_session_bound_and_may_forbid_it_and_require_two_reviewers():
    result = load(POLICY)
    assert result.ok, result.errors
    compiled = compile_policy(result.policy, "v1")
    writes = approval_of(compiled, "fs", "write_file")
    assert writes["session_approval"] == {"max_calls": 20, "max_minutes": 60}
    assert "approvals_required" not in writes  # one reviewer unless set
    deploys = approval_of(compiled, "git", "git_push")
    assert deploys["session_approval"] is False and deploys["approvals_required"] == 2


def test_the_settings_survive_a_bundle_round_trip():
    policy = load(POLICY).policy
    again = policy_from_dict(policy.to_dict())
    assert again.to_dict() == policy.to_dict()
    assert approval_of(compile_policy(again, "v1"), "git", "git_push")["approvals_required"] == 2


def test_a_policy_without_the_settings_keeps_its_canonical_form():
    result = load("version: v1\ndefaults: {approval: {timeout: 5m}}\n")
    approval = result.policy.to_dict()["defaults"]["approval"]
    assert "session_approval" not in approval and "approvals_required" not in approval


def test_session_approval_true_needs_a_bound():
    result = load("version: v1\ndefaults:\n  approval: {session_approval: true}\n")
    assert [(e.line, e.col) for e in result.errors] == [(3, 32)]
    assert "needs a bound: {max_calls: N, max_minutes: M}" in result.errors[0].message
    assert str(result.errors[0]).startswith("safety.yaml:3:32: ")


def test_session_approval_rejects_unknown_keys_bad_numbers_and_empty_bounds():
    result = load("""\
        version: v1
        defaults:
          approval:
            session_approval: {max_call: 3}
        rules:
          - id: r
            match: {topics: ["*"]}
            decision: require_approval
            approval: {session_approval: {max_minutes: 0}}
          - id: s
            match: {topics: ["x"]}
            decision: require_approval
            approval: {session_approval: {}}
          - id: t
            match: {topics: ["y"]}
            decision: require_approval
            approval: {session_approval: 5}
        """)
    messages = {(e.line, e.message) for e in result.errors}
    assert (4, "unknown key 'max_call' in session_approval (did you mean 'max_calls'?)") in messages
    assert (9, "'max_minutes' must be at least 1, got 0") in messages
    assert (13, "'session_approval' needs max_calls, max_minutes or both") in messages
    assert any(line == 17 and "must be false or a mapping" in m for line, m in messages)


def test_approvals_required_must_be_a_small_whole_number():
    result = load("""\
        version: v1
        rules:
          - id: r
            match: {topics: ["*"]}
            decision: require_approval
            approval: {approvals_required: 0}
          - id: s
            match: {topics: ["x"]}
            decision: require_approval
            approval: {approvals_required: 9}
          - id: t
            match: {topics: ["y"]}
            decision: require_approval
            approval: {approvals_required: two}
        """)
    messages = {(e.line, e.message) for e in result.errors}
    assert (6, "'approvals_required' must be at least 1, got 0") in messages
    assert (10, "'approvals_required' must be at most 5, got 9") in messages
    assert (14, "'approvals_required' must be a whole number, got a string") in messages


def test_two_reviewers_with_self_approval_warns_that_the_owner_never_counts():
    result = load("""\
        version: v1
        rules:
          - id: r
            match: {topics: ["*"]}
            decision: require_approval
            approval: {approvals_required: 2, allow_self_approval: true}
        """)
    assert result.ok
    assert [(w.line, "owner never counts" in w.message) for w in result.warnings] == [(6, True)]


def test_a_later_matching_rule_that_asks_for_two_reviewers_is_not_lost_to_an_earlier_broader_one():
    """Ties between require_approval rules go to the first in file order; its approval scopes still take in the
    stricter ones of every other matching require_approval rule."""
    result = load("""\
        version: v1
        defaults:
          approval: {session_approval: {max_calls: 20, max_minutes: 60}}
        rules:
          - id: approve-git-push
            match: {topics: ["job.mcp-bridge.git.git_push"]}
            decision: require_approval
          - id: approve-prod-push
            match: {topics: ["job.mcp-bridge.git.git_push"], environments: [prod]}
            decision: require_approval
            approval: {approvals_required: 2, session_approval: {max_calls: 3}}
          - id: no-session-for-main
            match: {topics: ["job.mcp-bridge.git.git_push"], args: {branch: {equals: main}}}
            decision: require_approval
            approval: {session_approval: false}
        """)
    assert result.ok, result.errors
    compiled = compile_policy(result.policy, "v1")

    def decide(env, branch):
        return evaluate(compiled, {"server": "git", "tool": "git_push", "environment": env,
                                   "arguments": {"branch": branch}})

    dev = decide("dev", "feature")
    assert dev.rule == "approve-git-push" and "approvals_required" not in dev.approval
    assert dev.approval["session_approval"] == {"max_calls": 20, "max_minutes": 60}
    prod = decide("prod", "feature")
    assert prod.rule == "approve-git-push"  # the first in file order still names the decision
    assert prod.approval["approvals_required"] == 2
    assert prod.approval["session_approval"] == {"max_calls": 3, "max_minutes": 60}
    assert decide("prod", "main").approval["session_approval"] is False
