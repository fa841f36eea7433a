"""`cordum simulate` over the evidence export agrees with the web simulation over the same rows."""

import json
import subprocess
import sys

import pytest

from cordum.decisions.models import EvidenceRecord
from cordum.decisions.selectors import evidence_as_dict
from cordum.simulation import services
from tests.simulation.data import CANDIDATE_POLICY, CANDIDATE_WITH_LIMITS, INVALID_POLICY

pytestmark = pytest.mark.django_db


def comparable(report):
    report = {k: v for k, v in report.items() if k not in ("run", "window", "filters", "gate")}
    if report.get("drift"):
        report["drift"] = {k: v for k, v in report["drift"].items() if k != "reference_version"}
    report["summary"] = {k: v for k, v in report["summary"].items()
                         if k not in ("candidate_version", "baseline_version")}
    return report


def export_jsonl(org, path):
    with open(path, "w") as fh:
        for record in EvidenceRecord.objects.filter(organization=org).order_by("seq"):
            fh.write(json.dumps(evidence_as_dict(record)) + "\n")


def cordum(*args):
    return subprocess.run([sys.executable, "-m", "cordum", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("policy", [CANDIDATE_POLICY, CANDIDATE_WITH_LIMITS], ids=["grouped", "limits"])
def test_the_cli_and_the_web_simulation_produce_the_same_report(sim_org, versions, recorded, tmp_path, policy):
    from tests.simulation.data import BASE_POLICY

    web = services.simulation_run(simulation=services.simulation_create(
        organization=sim_org, user=None, enqueue=False, policy_yaml=policy)).report
    assert web["drift"]["due_to_candidate"] == web["summary"]["changed_calls"]  # the live version is BASE_POLICY
    export_jsonl(sim_org, tmp_path / "calls.jsonl")
    (tmp_path / "safety.yaml").write_text(policy)
    (tmp_path / "live.yaml").write_text(BASE_POLICY)
    result = cordum("simulate", "--policy", str(tmp_path / "safety.yaml"), "--calls", str(tmp_path / "calls.jsonl"),
                    "--live", str(tmp_path / "live.yaml"))
    assert result.returncode == 0, result.stderr
    cli = json.loads(result.stdout)
    assert comparable(cli) == comparable(web)
    assert cli["summary"]["total_calls"] == 15


def test_the_cli_gate_exits_1_when_too_many_calls_are_newly_denied(sim_org, recorded, tmp_path):
    export_jsonl(sim_org, tmp_path / "calls.jsonl")
    (tmp_path / "safety.yaml").write_text(CANDIDATE_POLICY)
    args = ["simulate", "--policy", str(tmp_path / "safety.yaml"), "--calls", str(tmp_path / "calls.jsonl"),
            "--summary-only", "--fail-if-newly-denied-over"]
    failed = cordum(*args, "4")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["gate"] == {"fail_if_newly_denied_over": 4, "newly_denied": 5, "passed": False}
    assert cordum(*args, "5").returncode == 0


def test_the_cli_refuses_an_invalid_candidate_with_file_line_col(tmp_path):
    (tmp_path / "safety.yaml").write_text(INVALID_POLICY)
    (tmp_path / "calls.jsonl").write_text("")
    result = cordum("simulate", "--policy", str(tmp_path / "safety.yaml"), "--calls", str(tmp_path / "calls.jsonl"))
    assert result.returncode == 2
    assert f"{tmp_path / 'safety.yaml'}:3:" in result.stderr


@pytest.mark.parametrize(("record", "message"), [
    ({"server": "git", "tool": "git_push", "args": {}, "decision": "allow"}, "record 1: missing 'timestamp'"),
    ({"tool": "git_push", "timestamp": "2026-11-20T10:00:00Z", "decision": "allow"}, "missing 'server'"),
    ({"server": "git", "tool": "git_push", "timestamp": "2026-11-20T10:00:00Z"}, "'decision' must be one of"),
], ids=["no-timestamp", "no-server", "no-decision"])
def test_a_calls_file_missing_what_replay_needs_is_refused_naming_the_record(tmp_path, record, message):
    calls = tmp_path / "calls.jsonl"
    calls.write_text(json.dumps(record) + "\n")
    from tests.simulation.data import BASE_POLICY

    policy = tmp_path / "safety.yaml"
    policy.write_text(BASE_POLICY)
    r = cordum("simulate", "--policy", str(policy), "--calls", str(calls), "--quiet")
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert r.stdout == ""  # never a report counting a missing decision as a recorded deny


def test_cli_baseline_agrees_with_the_web_live_version_baseline(sim_org, versions, recorded, tmp_path):
    from cordum.simulation.choices import Baseline
    from tests.simulation.data import BASE_POLICY

    web = services.simulation_run(simulation=services.simulation_create(
        organization=sim_org, user=None, enqueue=False, candidate_version_id=versions["candidate"].pk,
        baseline=Baseline.LIVE)).report
    export_jsonl(sim_org, tmp_path / "calls.jsonl")
    (tmp_path / "safety.yaml").write_text(CANDIDATE_POLICY)
    (tmp_path / "live.yaml").write_text(BASE_POLICY)
    result = cordum("simulate", "--policy", str(tmp_path / "safety.yaml"), "--calls", str(tmp_path / "calls.jsonl"),
                    "--baseline", str(tmp_path / "live.yaml"))
    assert result.returncode == 0, result.stderr
    cli = json.loads(result.stdout)
    assert cli["summary"]["baseline"] == web["summary"]["baseline"] == "policy"
    assert comparable(cli) == comparable(web)


ROOT_POLICY = """\
version: v1
defaults:
  decision: deny
tools:
  - server: filesystem
    tool: write_file
    topic: job.mcp-bridge.write.file
rules:
  - id: allow-writes
    match:
      topics: ["job.mcp-bridge.write.*"]
    decision: allow
  - id: deny-write-outside-repo
    match:
      topics: ["job.mcp-bridge.write.*"]
      args:
        path: {outside: ["{root}"]}
    decision: deny
"""


def test_calls_are_replayed_against_the_working_root_they_were_decided_in(sim_org, tmp_path, member_client):
    import datetime as dt

    from django.utils import timezone

    from cordum.decisions.services import evidence_append
    from cordum.policy import args_digest
    from tests.simulation.data import recorded_calls

    # The same absolute path written by two agents: inside one's working root, outside the other's.
    template = recorded_calls(timezone.now() - dt.timedelta(days=2))[0]
    args = {"path": "/home/mo/src/payments/app.py", "content": "x"}
    calls = []
    for n, (agent, root) in enumerate([("claude-code-mo", "/home/mo/src/payments"), ("cursor-web", "/home/web/site")]):
        calls.append({**template, "decision_id": f"0193b000-0000-7000-8000-{n:012d}", "agent": agent, "root": root,
                      "server": "filesystem", "tool": "write_file", "args": args, "args_digest": args_digest(args),
                      "decision": "allow", "rule": "allow-writes", "session_id": f"sess_{n}"})
    evidence_append(organization=sim_org, records=calls)
    simulation = services.simulation_create(organization=sim_org, user=None, enqueue=False, policy_yaml=ROOT_POLICY)
    web = services.simulation_run(simulation=simulation).report
    assert web["matrix"]["allow"] == {"allow": 1, "require_approval": 0, "deny": 1}
    assert [(c["agent"], c["root"], c["after"], c["rule"]) for c in web["changed_calls"]] == [
        ("cursor-web", "/home/web/site", "deny", "deny-write-outside-repo")]
    from django.urls import reverse

    from cordum.accounts.choices import Role

    page = member_client(Role.POLICY_AUTHOR).get(reverse("simulation:detail", args=[simulation.pk])).content.decode()
    assert 'title="working root">/home/web/site</div>' in page
    export_jsonl(sim_org, tmp_path / "calls.jsonl")
    (tmp_path / "safety.yaml").write_text(ROOT_POLICY)
    result = cordum("simulate", "--policy", str(tmp_path / "safety.yaml"), "--calls", str(tmp_path / "calls.jsonl"))
    assert result.returncode == 0, result.stderr
    cli = json.loads(result.stdout)
    assert cli["matrix"] == web["matrix"] and cli["changed_calls"] == web["changed_calls"]


def test_the_cli_reports_progress_on_stderr_and_keeps_stdout_for_the_report(sim_org, recorded, tmp_path):
    export_jsonl(sim_org, tmp_path / "calls.jsonl")
    (tmp_path / "safety.yaml").write_text(CANDIDATE_POLICY)
    args = ("simulate", "--policy", str(tmp_path / "safety.yaml"), "--calls", str(tmp_path / "calls.jsonl"))
    result = cordum(*args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["total_calls"] == 15
    lines = result.stderr.splitlines()
    assert "simulate: reading: 100% (15/15 records)" in lines
    assert lines[-1] == "simulate: replaying: 15 calls done"
    quiet = cordum(*args, "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "" and json.loads(quiet.stdout) == json.loads(result.stdout)
