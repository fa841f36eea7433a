"""The pure replay core (cordum/policy/simulate.py): exact matrices, changed calls, dead rules, limits."""

import pytest

from cordum.policy import compile_policy, load_policy_text
from cordum.policy.simulate import simulate_records
from tests.simulation.data import (
    BASE_POLICY,
    CANDIDATE_POLICY,
    CANDIDATE_WITH_LIMITS,
    EXPECTED_MATRIX,
    decision_id,
    recorded_calls,
)


def compiled(text, version="candidate"):
    result = load_policy_text(text)
    assert result.ok, [str(e) for e in result.errors]
    return compile_policy(result.policy, version)


@pytest.fixture
def report():
    return simulate_records(compiled(CANDIDATE_POLICY), recorded_calls())


def test_a_candidate_adding_a_deny_rule_yields_exactly_the_expected_transition_matrix(report):
    assert report["matrix"] == EXPECTED_MATRIX
    summary = report["summary"]
    assert summary["total_calls"] == 15
    assert summary["changed_calls"] == 5
    assert summary["newly_denied"] == 5
    assert summary["newly_allowed"] == 0
    assert summary["tightened"] == 5 and summary["loosened"] == 0
    assert summary["distinct_signatures"] == 5  # 15 calls, each distinct signature evaluated once
    assert summary["baseline"] == "recorded"


def test_the_changed_call_list_names_each_signature_rule_and_samples(report):
    changed = [(c["agent"], c["tool"], c["before"], c["after"], c["rule"], c["count"], c["samples"])
               for c in report["changed_calls"]]
    assert changed == [
        ("claude-code-mo", "read_file", "allow", "deny", "deny-env-reads", 3, [decision_id(6), decision_id(8)]),
        ("cursor-web", "read_text_file", "allow", "deny", "deny-env-reads", 2, [decision_id(9), decision_id(10)]),
    ]
    # samples: first and last call of each (signature, decision, day) group, the 3 earliest of those kept
    assert report["changed_by_rule"] == [
        {"rule": "deny-env-reads", "before": "allow", "after": "deny", "count": 5,
         "samples": [decision_id(6), decision_id(8), decision_id(9)]},
    ]
    assert [(a["agent"], a["team"], a["count"], a["transitions"]) for a in report["changed_by_agent"]] == [
        ("claude-code-mo", "payments", 3, {"allow->deny": 3}),
        ("cursor-web", "web", 2, {"allow->deny": 2}),
    ]


def test_dead_rules_and_top_rules_are_reported(report):
    assert report["rules"]["dead"] == ["deny-terraform-destroy"]
    hits = {h["rule"]: h["count"] for h in report["rules"]["hits"]}
    assert hits == {"allow-reads": 10, "approve-git-push": 4, "deny-env-reads": 5, "deny-terraform-destroy": 0}
    assert report["rules"]["top"][:3] == [
        {"rule": "allow-reads", "count": 5}, {"rule": "deny-env-reads", "count": 5},
        {"rule": "approve-git-push", "count": 4},
    ]


def test_approval_load_per_day_counts_require_approval_before_and_after(report):
    assert report["approval_load"]["per_day"] == [
        {"day": "2026-11-20", "calls": 8, "before": 0, "after": 0},
        {"day": "2026-11-21", "calls": 7, "before": 4, "after": 4},
    ]
    assert report["approval_load"]["avg_per_day_after"] == 2.0


def test_a_baseline_policy_replaces_the_recorded_decisions_as_before():
    report = simulate_records(compiled(CANDIDATE_POLICY), recorded_calls(), baseline=compiled(BASE_POLICY, "live"))
    assert report["matrix"] == EXPECTED_MATRIX
    assert report["summary"]["baseline"] == "policy"
    assert report["summary"]["baseline_version"] == "live"


def test_limits_are_replayed_per_session_in_call_order():
    report = simulate_records(compiled(CANDIDATE_WITH_LIMITS), list(reversed(recorded_calls())))
    assert report["summary"]["limits_replayed"] is True
    # sess_mo_1: 5 allowed reads then 3 .env reads. max_calls 3 -> reads 4 and 5 are limited to deny; the
    # .env reads are denied by the policy itself (not counted). sess_mo_2: pushes 1-3 pass, the 4th is limited.
    assert report["matrix"] == {
        "allow": {"allow": 3 + 2 * 0, "require_approval": 0, "deny": 2 + 3 + 2},
        "require_approval": {"allow": 0, "require_approval": 3, "deny": 1},
        "deny": {"allow": 0, "require_approval": 0, "deny": 1},
    }
    by_rule = {(g["rule"], g["before"], g["after"]): g["count"] for g in report["changed_by_rule"]}
    assert by_rule == {
        ("deny-env-reads", "allow", "deny"): 5,
        ("limits.session.max_calls", "allow", "deny"): 2,
        ("limits.session.max_calls", "require_approval", "deny"): 1,
    }


def test_outcome_records_in_an_export_are_not_replayed():
    records = recorded_calls() + [{"record_type": "outcome", "decision_id": decision_id(1), "outcome": "executed",
                                   "timestamp": "2026-11-20T09:00:01Z"}]
    assert simulate_records(compiled(CANDIDATE_POLICY), records)["summary"]["total_calls"] == 15


def test_with_a_live_reference_the_report_tells_drift_from_the_candidates_own_changes():
    # Recorded decisions say allow for the .env reads; the live version here already denies them.
    report = simulate_records(compiled(CANDIDATE_POLICY), recorded_calls(), reference=compiled(CANDIDATE_POLICY, "live"))
    assert report["matrix"] == EXPECTED_MATRIX
    assert report["drift"] == {"reference_version": "live", "changed_calls": 5, "also_changed_by_reference": 5,
                               "due_to_candidate": 0}
    report = simulate_records(compiled(CANDIDATE_POLICY), recorded_calls(), reference=compiled(BASE_POLICY, "live"))
    assert report["drift"]["due_to_candidate"] == 5 and report["drift"]["also_changed_by_reference"] == 0
    assert simulate_records(compiled(CANDIDATE_POLICY), recorded_calls())["drift"] is None
