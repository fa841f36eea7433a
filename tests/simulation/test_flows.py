"""The web simulator replays session data-flow rules from the evidence table in PostgreSQL exactly as the offline
simulator (and the sidecar) do: per session, in order, so a label one call set decides a later call of that
session only."""

import dataclasses
import datetime as dt

import pytest
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from cordum.decisions.services import evidence_append
from cordum.policy import args_digest, compile_policy, load_policy_text
from cordum.policy.simulate import simulate_records
from cordum.simulation import services
from tests.simulation.test_limits_prefilter import POLICY as PREFILTER_POLICY
from tests.simulation.test_limits_prefilter import START, limits, records_of, session
from tests.simulation.test_limits_prefilter import policy as limited

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


@pytest.mark.django_db
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


# --- the prefilter: sessions in which no call can set a label are decided as without flow rules -------------

FLOW_RULES = """\
  - id: deny-writes-after-push
    match: {topics: ["job.mcp-bridge.write.*"], after: [pushed]}
    decision: deny
    reason: No more writes in a session that pushed
  # a shell command (denied by default) is allowed after a push, and then sets a label of its own
  - id: allow-shell-after-push
    match: {topics: ["job.mcp-bridge.shell.*"], after: [pushed]}
    decision: allow
  - id: deny-reads-after-shell
    match: {topics: ["job.mcp-bridge.read.*"], after: [shelled]}
    decision: deny
labels:
  - label: pushed
    match: {topics: ["job.mcp-bridge.git.push"]}
  - label: shelled
    match: {topics: ["job.mcp-bridge.shell.*"]}
"""


def flow_policy(version="candidate", **limits):
    """The prefilter law's policy plus a label set by a push and a rule that denies writes after it."""
    base = load_policy_text(PREFILTER_POLICY.replace("{rule_limits}", "") + FLOW_RULES)
    assert base.ok, base.errors
    if not limits:
        return compile_policy(base.policy, version)
    return compile_policy(dataclasses.replace(base.policy, limits=limited(**limits).policy.limits), version)


@settings(max_examples=100, deadline=None)
@given(limits, st.lists(session, min_size=1, max_size=8), st.sampled_from(["recorded", "baseline", "reference"]),
       st.booleans())
def test_prefiltered_replay_with_flow_rules_equals_replaying_every_call(candidate_limits, sessions, before, other_flows):
    candidate = flow_policy(**{k: v for k, v in candidate_limits.items() if v is not None})
    other = flow_policy("live", max_calls=4) if other_flows else limited(max_calls=4, per_minute=2, version="live")
    kwargs = {"baseline": other} if before == "baseline" else {"reference": other} if before == "reference" else {}
    records = records_of(sessions)
    assert simulate_records(candidate, records, **kwargs) == simulate_records(
        candidate, records, prefilter=False, **kwargs)


@pytest.mark.django_db
def test_the_database_path_replays_in_order_only_the_sessions_that_may_set_a_label(sim_org):
    pushing = (0, 10, [(2, 30, "allow"), (4, 30, "require_approval"), (3, 30, "allow")])  # write, push, write
    shelling = (1, 20, [(5, 30, "deny"), (0, 30, "allow")])  # shell (default deny, so no label), read
    quiet = [(i % 2, 60 * i, [(0, 40, "allow"), (2, 90, "allow")]) for i in range(6)]
    shift = (timezone.now() - dt.timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0) - START
    records = []
    for r in records_of([pushing, shelling, *quiet]):
        ts = dt.datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) + shift
        records.append({**{k: v for k, v in r.items() if k != "seq"}, "timestamp": ts.isoformat().replace("+00:00", "Z")})
    evidence_append(organization=sim_org, records=records)
    simulation = services.simulation_create(organization=sim_org, user=None, policy_yaml="version: v1", days=7,
                                            enqueue=False)
    candidate = flow_policy()
    fast = services.simulation_replay(simulation=simulation, candidate=candidate)
    full = services.simulation_replay(simulation=simulation, candidate=candidate, prefilter=False)
    # only the pushing session: the shelling one's shell call is denied while it holds no label, so it never
    # gets one
    assert fast.pop("run")["calls_replayed_in_order"] == 3 < full.pop("run")["calls_replayed_in_order"] == len(records)
    assert fast == full
    [changed] = full["changed_calls"]
    assert (changed["tool"], changed["after"], changed["rule"], changed["count"]) == (
        "write_file", "deny", "deny-writes-after-push", 1)
