"""Session data-flow rules: `labels` entries set a session label when a matching call runs; rules with
`match.after` decide later calls of that session. Loader (file:line:col, lint of unreachable conditions),
engine, the session tracker, the policy-test format and the offline simulator."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cordum.policy import (
    SessionFlows,
    args_digest,
    compile_policy,
    diff_policies,
    label_origin,
    load_policy_text,
    policy_from_dict,
)
from cordum.policy.model import Defaults, LabelRule, Match, Policy
from cordum.policy.simulate import RANK, simulate_records
from cordum.policy.testing import run_repo_tests
from tests.policy.test_laws import TAGS as LAW_TAGS
from tests.policy.test_laws import calls as law_calls
from tests.policy.test_laws import decisions as law_decisions
from tests.policy.test_laws import patterns as law_patterns
from tests.policy.test_laws import rules as law_rules

POLICY = """\
version: v1
defaults: {decision: deny}
tools:
  - server: fs
    tool: "read_*"
    when: {args: {path: {glob: ["**/.env"]}}}
    topic: job.mcp-bridge.read.secrets
    risk_tags: [credentials]
  - {server: fs, tool: "read_*", topic: job.mcp-bridge.read.file, target: "{path}"}
  - {server: fetch, tool: fetch, topic: job.mcp-bridge.net.fetch, risk_tags: [egress], target: "{url}"}
  - {server: git, tool: git_push, topic: job.mcp-bridge.git.push, risk_tags: [deploy, egress]}
rules:
  - id: allow-reads
    match: {topics: ["job.mcp-bridge.read.*"]}
    decision: allow
  - id: allow-fetch
    match: {topics: ["job.mcp-bridge.net.*"]}
    decision: allow
  - id: approve-push
    match: {topics: ["job.mcp-bridge.git.push"]}
    decision: require_approval
  - id: deny-egress-after-secret-read
    match:
      risk_tags: [egress]
      after: [secret-read]
    decision: deny
    reason: "No network egress after a secret was read in this session"
labels:
  - label: secret-read
    description: read a .env file
    match: {risk_tags: [credentials]}
"""

READ_ENV = {"server": "fs", "tool": "read_text_file", "arguments": {"path": "/work/p/.env"}}
READ_CODE = {"server": "fs", "tool": "read_text_file", "arguments": {"path": "/work/p/app.py"}}
FETCH = {"server": "fetch", "tool": "fetch", "arguments": {"url": "https://example.com/x"}}
PUSH = {"server": "git", "tool": "git_push", "arguments": {}}


def load(text: str):
    return load_policy_text(text, "safety.yaml")


@pytest.fixture
def compiled():
    result = load(POLICY)
    assert result.ok, result.errors
    assert result.warnings == []
    return compile_policy(result.policy, "v-test")


def origin(**kw):
    base = {"decision_id": "0193-read", "server": "fs", "tool": "read_text_file", "target": "/work/p/.env",
            "timestamp": "2026-12-05T18:00:00Z"}
    return label_origin(**{**base, **kw})


# --- engine ------------------------------------------------------------------------------------------


def test_a_call_matching_a_labels_entry_reports_the_label_it_sets(compiled):
    assert compiled.evaluate(READ_ENV).labels == ("secret-read",)
    assert compiled.evaluate(READ_CODE).labels == ()


def test_a_flow_rule_never_matches_without_session_labels(compiled):
    d = compiled.evaluate(FETCH)
    assert (d.decision, d.rule, d.flow) == ("allow", "allow-fetch", None)
    assert compiled.evaluate(FETCH, {}).decision == "allow"


def test_after_a_secret_read_egress_is_denied_and_the_reason_names_the_earlier_call(compiled):
    d = compiled.evaluate(FETCH, {"secret-read": origin()})
    assert (d.decision, d.rule) == ("deny", "deny-egress-after-secret-read")
    assert d.matched == ("allow-fetch", "deny-egress-after-secret-read")
    assert d.reason.startswith("No network egress after a secret was read in this session (")
    assert "session label 'secret-read' was set by fs.read_text_file on /work/p/.env" in d.reason
    assert "call 0193-read" in d.reason and "2026-12-05T18:00:00Z" in d.reason
    assert d.flow == {"label": "secret-read", "rule": "deny-egress-after-secret-read", "set_by": origin()}
    assert d.to_dict()["flow"]["set_by"]["decision_id"] == "0193-read"


def test_a_flow_rule_competes_like_any_rule_the_most_restrictive_wins(compiled):
    d = compiled.evaluate(PUSH, {"secret-read": origin()})
    assert (d.decision, d.rule) == ("deny", "deny-egress-after-secret-read")
    assert compiled.evaluate(PUSH).decision == "require_approval"


def test_labels_given_as_a_plain_set_decide_the_same_without_an_origin(compiled):
    d = compiled.evaluate(FETCH, {"secret-read"})
    assert d.decision == "deny" and d.flow["set_by"] == {}


def test_a_label_the_rule_does_not_wait_for_changes_nothing(compiled):
    assert compiled.evaluate(FETCH, {"other-label": origin()}).decision == "allow"


def test_a_policy_without_flow_rules_has_no_flow_state_and_unchanged_canonical_form():
    text = POLICY.split("  - id: deny-egress-after-secret-read")[0]
    result = load(text)
    assert result.ok
    c = compile_policy(result.policy, "v")
    assert c.has_flows is False and c.flow_rules == () and c.label_entries == ()
    d = c.to_dict() if hasattr(c, "to_dict") else result.policy.to_dict()
    assert "labels" not in d and all("after" not in r["match"] for r in d["rules"])


def test_labels_and_after_round_trip_through_the_bundle_form():
    policy = load(POLICY).policy
    again = policy_from_dict(policy.to_dict())
    assert again == policy
    assert again.labels[0].label == "secret-read" and again.rule("deny-egress-after-secret-read").match.after == (
        "secret-read",)
    assert compile_policy(again, "v").evaluate(FETCH, {"secret-read"}).decision == "deny"


# --- the session tracker -----------------------------------------------------------------------------


def test_session_flows_keep_the_first_origin_per_label_and_sessions_apart():
    flows = SessionFlows()
    assert flows.labels("a") is None
    assert flows.record("a", ("secret-read",), origin()) == ["secret-read"]
    assert flows.record("a", ("secret-read",), origin(decision_id="later")) == []
    assert flows.labels("a")["secret-read"]["decision_id"] == "0193-read"
    assert flows.labels("b") is None  # another session is unaffected
    exported = flows.export_session("a")
    other = SessionFlows()
    other.import_session("a", exported)
    assert other.labels("a") == flows.labels("a")
    carried = SessionFlows()
    carried.carry_over(flows)
    assert carried.labels("a") == flows.labels("a")
    with pytest.raises(ValueError):
        other.import_session("x", {"secret-read": "not a dict"})


# --- loader: shape and file:line:col --------------------------------------------------------------------


def test_a_rule_waiting_for_a_label_nothing_sets_is_an_error_at_that_label():
    text = POLICY.replace("after: [secret-read]", "after: [secret-red]")
    result = load(text)
    assert not result.ok
    [issue] = [e for e in result.errors if "secret-red" in e.message]
    line = text.splitlines().index("      after: [secret-red]") + 1
    assert (issue.line, issue.col) == (line, 15)
    assert "rule 'deny-egress-after-secret-read' waits for label 'secret-red'" in issue.message
    assert "no entry under 'labels' sets it" in issue.message and "(labels set: secret-read)" in issue.message
    assert any("label 'secret-read' is set but no rule" in w.message for w in result.warnings)


def test_a_rule_waiting_for_one_label_that_nothing_sets_among_others_is_a_warning():
    result = load(POLICY.replace("after: [secret-read]", "after: [secret-read, never-set]"))
    assert result.ok
    assert any("waits for label 'never-set'" in w.message and "that condition never holds" in w.message
               for w in result.warnings)


def test_a_label_whose_every_call_is_denied_is_never_set_and_its_rule_is_unreachable():
    text = POLICY.replace("labels:\n", """\
  - id: deny-secrets
    match: {risk_tags: [credentials]}
    decision: deny
labels:
""")
    result = load(text)
    assert not result.ok
    assert any("label entry for 'secret-read' never sets it: deny rule 'deny-secrets'" in w.message
               for w in result.warnings)
    assert any("waits for label 'secret-read'" in e.message and "every call its 'labels' entries match is denied"
               in e.message for e in result.errors)


def test_a_deny_without_after_that_covers_a_flow_rule_makes_it_unreachable():
    text = POLICY.replace("  - id: deny-egress-after-secret-read\n", """\
  - id: deny-all-egress
    match: {risk_tags: [egress]}
    decision: deny
  - id: deny-egress-after-secret-read
""")
    result = load(text)
    assert any("rule 'deny-egress-after-secret-read' is unreachable: deny rule 'deny-all-egress'" in e.message
               for e in result.errors)


def test_a_flow_deny_does_not_make_plain_rules_unreachable():
    # deny-egress-after-secret-read matches fetches only after a label: allow-fetch still decides the others
    assert load(POLICY).ok


@pytest.mark.parametrize(("old", "new", "message"), [
    ("after: [secret-read]", "after: []", "'match.after' must name at least one label"),
    ("after: [secret-read]", "after: ['bad label!']", "invalid label 'bad label!' in match.after"),
    ("    match: {risk_tags: [credentials]}", "    match: {risk_tags: [credentials], after: [x]}",
     "a label entry (labels[0]) cannot use 'after'"),
    ("  - label: secret-read\n", "  - labl: secret-read\n", "unknown key 'labl' in label entry labels[0]"),
    ("labels:\n  - label", "labels: {label", None),
])
def test_malformed_flow_sections_are_located_errors(old, new, message):
    text = POLICY.replace(old, new)
    if message is None:  # a mapping instead of a list
        text = POLICY.split("labels:\n")[0] + "labels: {label: secret-read}\n"
        message = "'labels' must be a list of label entries"
    result = load(text)
    assert not result.ok
    assert any(message in e.message and e.line > 1 for e in result.errors), [str(e) for e in result.errors]


# --- policy tests: a session of calls -----------------------------------------------------------------


def test_a_policy_test_case_replays_a_session_in_order(tmp_path):
    (tmp_path / "safety.yaml").write_text(POLICY)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "flows.yaml").write_text("""\
cases:
  - name: fetch after .env read is denied
    session:
      - call: {server: fs, tool: read_text_file, arguments: {path: /work/p/.env}}
        expect: {decision: allow, labels: [secret-read]}
      - call: {server: fetch, tool: fetch, arguments: {url: "https://example.com/x"}}
        expect: {decision: deny, rule: deny-egress-after-secret-read, reason: "fs.read_text_file on /work/p/.env"}
  - name: a wrong expectation fails with the call's number
    session:
      - call: {server: fs, tool: read_text_file, arguments: {path: /work/p/.env}}
      - call: {server: fetch, tool: fetch, arguments: {url: "https://example.com/x"}}
        expect: allow
  - name: push needs approval without a secret read
    call: {server: git, tool: git_push, arguments: {}}
    expect: require_approval
""")
    report = run_repo_tests(str(tmp_path))
    assert not report.errors
    passed, failed, plain = report.results
    assert passed.passed, passed.problems
    assert not failed.passed and failed.problems == ["call 2: decision: expected allow, got deny"]
    assert plain.passed
    assert report.uncovered_rules == []


def test_a_malformed_session_case_is_a_located_test_file_error(tmp_path):
    (tmp_path / "safety.yaml").write_text(POLICY)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "bad.yaml").write_text("cases:\n  - name: x\n    session:\n      - expect: allow\n")
    report = run_repo_tests(str(tmp_path))
    [error] = report.errors
    assert error.line == 2 and "session call 1: must be a mapping with 'call'" in error.message


# --- the offline simulator replays sessions in order ----------------------------------------------------


def _record(n: int, session: str, call: dict, decision: str, second: int) -> dict:
    ts = dt.datetime(2026, 12, 1, 9, 0, second, tzinfo=dt.UTC)
    return {"record_type": "decision", "decision_id": f"0193b000-0000-7000-8000-{n:012d}", "agent": "claude-code",
            "session_id": session, "server": call["server"], "tool": call["tool"], "args": call["arguments"],
            "args_digest": args_digest(call["arguments"]), "decision": decision, "mode": "enforce",
            "timestamp": ts.isoformat().replace("+00:00", "Z")}


def test_the_simulator_replays_labels_per_session_so_only_the_fetch_after_the_read_is_denied(compiled):
    records = [
        _record(1, "sess-a", READ_ENV, "allow", 1),
        _record(2, "sess-b", FETCH, "allow", 2),  # another session fetches after a's read: unaffected
        _record(3, "sess-a", FETCH, "allow", 3),
        _record(4, "sess-b", READ_ENV, "allow", 4),  # b reads after its fetch: the fetch came first
    ]
    report = simulate_records(compiled, records)
    assert report["summary"]["flows_replayed"] is True
    assert report["matrix"]["allow"] == {"allow": 3, "require_approval": 0, "deny": 1}
    [changed] = report["changed_calls"]
    assert (changed["tool"], changed["before"], changed["after"], changed["rule"]) == (
        "fetch", "allow", "deny", "deny-egress-after-secret-read")
    assert changed["samples"] == ["0193b000-0000-7000-8000-000000000003"]
    hits = {h["rule"]: h["count"] for h in report["rules"]["hits"]}
    assert hits["deny-egress-after-secret-read"] == 1 and hits["allow-fetch"] == 2


def test_a_call_the_replayed_policy_denies_sets_no_label(compiled):
    deny_reads = compile_policy(load(POLICY.replace("""  - id: allow-reads
    match: {topics: ["job.mcp-bridge.read.*"]}
    decision: allow""", """  - id: allow-reads
    match: {topics: ["job.mcp-bridge.read.file"]}
    decision: allow""")).policy, "v2")
    records = [_record(1, "s", READ_ENV, "allow", 1), _record(2, "s", FETCH, "allow", 2)]
    report = simulate_records(deny_reads, records)
    assert report["matrix"]["allow"] == {"allow": 1, "require_approval": 0, "deny": 1}  # the read only


# --- semantic diff ----------------------------------------------------------------------------------------


def test_the_semantic_diff_names_label_entries_and_flow_conditions_added():
    without = load(POLICY.split("  - id: deny-egress-after-secret-read")[0]).policy
    d = diff_policies(without, load(POLICY).policy)
    out = d.to_dict()
    assert [e["label"] for e in out["labels"]["added"]] == ["secret-read"] and out["labels"]["removed"] == []
    assert [r["match"]["after"] for r in out["rules"]["added"]] == [["secret-read"]]
    assert "+ label secret-read set by * [credentials]" in d.to_text()
    assert not d.empty


# --- laws (hypothesis) ----------------------------------------------------------------------------------

LABELS = ["secret-read", "untrusted-content", "pushed"]


@st.composite
def flow_policies(draw):
    """Random rules, some waiting for labels, and label entries over the law module's topics and tags."""
    base = draw(law_rules())
    flows = [dataclasses.replace(r, id=f"f{i}", match=dataclasses.replace(
        r.match, after=tuple(draw(st.lists(st.sampled_from(LABELS), min_size=1, max_size=2, unique=True)))))
        for i, r in enumerate(draw(law_rules(prefix="f")))]
    entries = tuple(LabelRule(label=draw(st.sampled_from(LABELS)), match=Match(
        topics=tuple(draw(st.lists(law_patterns, max_size=1))),
        risk_tags=tuple(draw(st.lists(st.sampled_from(LAW_TAGS), max_size=1)))))
        for _ in range(draw(st.integers(0, 3))))
    mixed = list(base)
    for f in flows:
        mixed.insert(draw(st.integers(0, len(mixed))), f)
    return Policy(defaults=Defaults(decision=draw(law_decisions)), rules=tuple(mixed), labels=entries), tuple(base)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow_policies(), law_calls, st.sets(st.sampled_from(LABELS)))
def test_flow_rules_never_act_without_labels_and_only_tighten_a_matched_decision(policies, call, labels):
    policy, plain_rules = policies
    with_flows = compile_policy(policy, "v")
    plain = compile_policy(dataclasses.replace(policy, rules=plain_rules, labels=()), "v")
    without = with_flows.evaluate(call)
    assert (without.decision, without.rule, without.matched) == (lambda d: (d.decision, d.rule, d.matched))(
        plain.evaluate(call))
    held = with_flows.evaluate(call, dict.fromkeys(labels, {}))
    if without.rule is not None:  # a matched decision only gets stricter (a rule may replace the default)
        assert RANK[held.decision] >= RANK[without.decision]
    if without.decision == "deny" and without.rule is not None:  # what may_set_labels relies on
        assert held.decision == "deny"
    if held.flow is not None:
        assert held.flow["label"] in labels and held.rule == held.flow["rule"]
    # a call's labels do not depend on what the session holds
    assert held.labels == without.labels


def test_a_flow_deny_makes_a_flow_rule_waiting_for_the_same_label_unreachable_but_not_a_plain_rule():
    text = POLICY.replace("labels:\n", """\
  - id: approve-egress-after-secret-read
    match: {risk_tags: [egress], after: [secret-read]}
    decision: require_approval
labels:
""")
    result = load(text)
    assert [e.message.split(":")[0] for e in result.errors] == [
        "rule 'approve-egress-after-secret-read' is unreachable"]
    # allow-fetch (no `after`) stays reachable: without the label the flow deny does not match
    assert not any("allow-fetch" in e.message for e in result.errors)


def test_a_bundle_whose_match_uses_a_condition_this_engine_does_not_know_is_refused_not_widened():
    data = load(POLICY).policy.to_dict()
    data["rules"][1]["match"]["when_moon"] = ["full"]
    with pytest.raises(ValueError, match="when_moon, which this version of Cordum does not know"):
        policy_from_dict(data)
