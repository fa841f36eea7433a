"""The web simulator replays session data-flow rules from the evidence table in PostgreSQL exactly as the offline
simulator (and the sidecar) do: per session, in order, so a label one call set decides a later call of that
session only."""

import datetime as dt

import pytest
from django.utils import timezone

from cordum.decisions.services import evidence_append
from cordum.policy import args_digest, compile_policy, load_policy_text
from cordum.policy.simulate import simulate_records
from cordum.simulation import services

pytestmark = pytest.mark.django_db

FLOW_CANDIDATE = """\
version: v1
defaults: {decision: deny}
tools:
  - server: filesystem
    tool: read_*
    when: {args: {path: {glob: ["**/.env", ".env"]}}}
    topic: job.mcp-bridge.read.secrets
    risk_tags: [credentials]
  - {server: filesystem, tool: read_*, topic: job.mcp-bridge.read.file}
  - {server: fetch, tool: fetch, topic: job.mcp-bridge.net.fetch, risk_tags: [egress]}
rules:
  - id: allow-reads
    match: {topics: ["job.mcp-bridge.read.*"]}
    decision: allow
  - id: allow-fetch
    match: {topics: ["job.mcp-bridge.net.*"]}
    decision: allow
  - id: deny-egress-after-secret-read
    match: {risk_tags: [egress], after: [secret-read]}
    decision: deny
    reason: No network egress after a secret read
labels:
  - label: secret-read
    match: {risk_tags: [credentials]}
"""

# (session, server, tool, args): in time order, interleaved across sessions
CALLS = [
    ("sess_flow_a", "filesystem", "read_file", {"path": "services/api/.env"}),
    ("sess_flow_b", "fetch", "fetch", {"url": "https://example.com/a"}),
    ("sess_flow_a", "fetch", "fetch", {"url": "https://example.com/a"}),
    ("sess_flow_b", "filesystem", "read_file", {"path": "src/app.py"}),
    ("sess_flow_a", "fetch", "fetch", {"url": "https://example.com/a"}),
    ("sess_flow_b", "fetch", "fetch", {"url": "https://example.com/a"}),
]


def _records():
    start = (timezone.now() - dt.timedelta(days=2)).replace(microsecond=0)
    return [{
        "record_type": "decision", "decision_id": f"0193c000-0000-7000-8000-{n:012d}", "agent": "claude-code-mo",
        "team": "payments", "environment": "dev", "session_id": session, "server": server, "tool": tool,
        "args": args, "args_digest": args_digest(args), "decision": "allow", "rule": None, "mode": "enforce",
        "timestamp": (start + dt.timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
    } for n, (session, server, tool, args) in enumerate(CALLS, 1)]


def test_the_web_simulator_denies_only_the_fetches_after_a_secret_read_in_the_same_session(sim_org):
    records = _records()
    evidence_append(organization=sim_org, records=records)
    simulation = services.simulation_run(simulation=services.simulation_create(
        organization=sim_org, user=None, enqueue=False, policy_yaml=FLOW_CANDIDATE))
    report = simulation.report
    assert simulation.status == "completed", simulation.error
    assert report["summary"]["flows_replayed"] is True and report["run"]["grouped"] is False
    assert report["matrix"]["allow"] == {"allow": 4, "require_approval": 0, "deny": 2}
    [changed] = report["changed_calls"]
    assert (changed["tool"], changed["after"], changed["rule"], changed["count"]) == (
        "fetch", "deny", "deny-egress-after-secret-read", 2)
    assert changed["samples"] == [records[2]["decision_id"], records[4]["decision_id"]]  # session a's, not b's
    offline = simulate_records(compile_policy(load_policy_text(FLOW_CANDIDATE).policy, "c"), records)
    assert offline["matrix"] == report["matrix"]
    assert offline["changed_calls"][0]["samples"] == changed["samples"]
