"""simulation_create / simulation_run against the real evidence table in PostgreSQL."""

import datetime as dt

import pytest
from django.utils import timezone

from cordum.common.errors import CordumError
from cordum.decisions.services import evidence_append
from cordum.policy import args_digest
from cordum.simulation import services
from cordum.simulation.choices import Baseline, SimulationStatus
from cordum.simulation.models import Simulation
from tests.simulation.data import CANDIDATE_POLICY, CANDIDATE_WITH_LIMITS, EXPECTED_MATRIX, INVALID_POLICY

pytestmark = pytest.mark.django_db


def run(org, **kwargs):
    simulation = services.simulation_create(organization=org, user=None, enqueue=False, **kwargs)
    return services.simulation_run(simulation=simulation)


def test_a_candidate_version_adding_a_deny_rule_yields_the_expected_matrix_and_changed_calls(sim_org, versions,
                                                                                             recorded):
    simulation = run(sim_org, candidate_version_id=versions["candidate"].pk)
    assert simulation.status == SimulationStatus.COMPLETED
    assert simulation.progress == 1.0
    assert simulation.rows_processed == simulation.rows_total == 15
    report = simulation.report
    assert report["matrix"] == EXPECTED_MATRIX
    assert [(c["agent"], c["tool"], c["before"], c["after"], c["rule"], c["count"])
            for c in report["changed_calls"]] == [
        ("claude-code-mo", "read_file", "allow", "deny", "deny-env-reads", 3),
        ("cursor-web", "read_text_file", "allow", "deny", "deny-env-reads", 2),
    ]
    assert report["rules"]["dead"] == ["deny-terraform-destroy"]
    assert report["summary"]["distinct_signatures"] == 5
    # each distinct signature evaluated once by the candidate and once by the live version (for drift)
    assert report["run"]["grouped"] is True and report["run"]["evaluations"] == 2 * 5
    assert simulation.baseline_version == versions["live"]
    assert report["drift"] == {"reference_version": versions["live"].version, "changed_calls": 5,
                               "also_changed_by_reference": 0, "due_to_candidate": 5}


def test_samples_are_the_first_and_last_call_of_each_group_linking_to_the_evidence_record(sim_org, versions,
                                                                                           recorded):
    report = run(sim_org, candidate_version_id=versions["candidate"].pk).report
    env_reads = sorted(r["decision_id"] for r in recorded if r["args"] == {"path": "services/api/.env"})
    assert report["changed_calls"][0]["samples"] == [env_reads[0], env_reads[-1]]


def test_pasted_yaml_and_a_commit_prefix_are_candidates_too(sim_org, versions, recorded):
    pasted = run(sim_org, policy_yaml=CANDIDATE_POLICY)
    by_commit = run(sim_org, candidate_commit="bbbbbbb")
    assert pasted.report["matrix"] == by_commit.report["matrix"] == EXPECTED_MATRIX
    assert by_commit.candidate_version == versions["candidate"]


def test_filters_narrow_the_window_to_a_team_agent_or_environment(sim_org, versions, recorded):
    web = run(sim_org, candidate_version_id=versions["candidate"].pk, team="web")
    assert web.report["summary"]["total_calls"] == 2
    assert web.report["matrix"]["allow"]["deny"] == 2
    staging = run(sim_org, candidate_version_id=versions["candidate"].pk, environment="staging")
    assert staging.report["summary"]["total_calls"] == 1
    mo = run(sim_org, candidate_version_id=versions["candidate"].pk, agent="claude-code-mo")
    assert mo.report["summary"]["total_calls"] == 12


def test_a_window_that_ends_before_the_calls_replays_nothing(sim_org, versions, recorded):
    simulation = run(sim_org, candidate_version_id=versions["candidate"].pk, days=1)
    assert simulation.report["summary"]["total_calls"] == 0
    assert simulation.progress == 1.0


def test_the_live_version_can_be_replayed_as_the_baseline(sim_org, versions, recorded):
    simulation = run(sim_org, candidate_version_id=versions["candidate"].pk, baseline=Baseline.LIVE)
    assert simulation.report["summary"]["baseline"] == "policy"
    assert simulation.report["summary"]["baseline_version"] == versions["live"].version
    assert simulation.report["matrix"] == EXPECTED_MATRIX


def test_limits_are_replayed_per_session_in_order_from_the_database(sim_org, versions, recorded):
    simulation = run(sim_org, policy_yaml=CANDIDATE_WITH_LIMITS)
    report = simulation.report
    assert report["summary"]["limits_replayed"] is True and report["run"]["grouped"] is False
    assert report["matrix"]["allow"] == {"allow": 3, "require_approval": 0, "deny": 7}
    assert report["matrix"]["require_approval"] == {"allow": 0, "require_approval": 3, "deny": 1}


def test_an_invalid_candidate_version_is_refused_with_its_file_line_col_errors(sim_org, versions):
    with pytest.raises(CordumError) as exc:
        services.simulation_create(organization=sim_org, user=None, candidate_version_id=versions["invalid"].pk)
    errors = exc.value.extra["errors"]
    assert errors and all(e.startswith("safety.yaml:") for e in errors)
    assert any("maybe" in e for e in errors)
    assert exc.value.extra["field"] == "candidate_version_id"
    assert not Simulation.objects.exists()


def test_invalid_pasted_yaml_is_refused_with_its_errors(sim_org, versions):
    with pytest.raises(CordumError) as exc:
        services.simulation_create(organization=sim_org, user=None, policy_yaml=INVALID_POLICY)
    assert any(e.startswith("safety.yaml:3:") for e in exc.value.extra["errors"])


def test_exactly_one_candidate_must_be_given(sim_org, versions):
    with pytest.raises(CordumError, match="exactly one"):
        services.simulation_create(organization=sim_org, user=None, candidate_version_id=versions["candidate"].pk,
                                   policy_yaml=CANDIDATE_POLICY)


def test_a_finished_simulation_is_not_run_twice(sim_org, versions, recorded):
    simulation = run(sim_org, candidate_version_id=versions["candidate"].pk)
    finished_at = simulation.finished_at
    assert services.simulation_run(simulation=simulation).finished_at == finished_at


def test_the_ci_gate_fails_when_more_calls_are_newly_denied_than_allowed(sim_org, versions, recorded):
    strict = run(sim_org, candidate_version_id=versions["candidate"].pk, fail_if_newly_denied_over=4)
    lenient = run(sim_org, candidate_version_id=versions["candidate"].pk, fail_if_newly_denied_over=5)
    assert strict.gate == {"fail_if_newly_denied_over": 4, "newly_denied": 5, "passed": False}
    assert lenient.gate["passed"] is True


def test_a_recorded_call_is_replayed_against_the_file_it_reached_not_only_the_path_it_named(sim_org, versions):
    """The sidecar records where a path really led (a symlink `notes.txt -> .env`); the control plane has no file
    system of the agent's, so the simulator judges the call by that record, as the sidecar did."""
    when = (timezone.now() - dt.timedelta(days=2)).isoformat().replace("+00:00", "Z")
    call = {"record_type": "decision", "decision_id": "0193a000-0000-7000-8000-000000000999",
            "agent": "claude-code-mo", "team": "payments", "environment": "dev", "session_id": "sess_link",
            "server": "filesystem", "tool": "read_file", "decision": "allow", "rule": "allow-reads",
            "mode": "enforce", "timestamp": when, "root": "/home/mo/app"}
    linked = dict(call, args={"path": "docs/notes.txt"}, args_digest=args_digest({"path": "docs/notes.txt"}),
                  facts={"reaches": {"path": "/home/mo/app/.env"}})
    evidence_append(organization=sim_org, records=[linked])
    report = run(sim_org, candidate_version_id=versions["candidate"].pk).report
    assert [(c["tool"], c["before"], c["after"], c["rule"]) for c in report["changed_calls"]] == [
        ("read_file", "allow", "deny", "deny-env-reads")]
