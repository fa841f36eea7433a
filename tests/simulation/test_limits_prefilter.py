"""The limits prefilter: skipping sessions no limit can touch gives exactly the report of replaying every call."""

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cordum.policy import args_digest, compile_policy, load_policy_text
from cordum.policy.simulate import DECISIONS, simulate_records

POLICY = """\
version: v1
defaults:
  decision: deny
tools:
  - {server: filesystem, tool: read_*, topic: job.mcp-bridge.read.file}
  - {server: filesystem, tool: write_file, topic: job.mcp-bridge.write.file}
  - {server: git, tool: git_push, topic: job.mcp-bridge.git.push}
rules:
  - id: allow-reads
    match: {topics: ["job.mcp-bridge.read.*"]}
    decision: allow
    reason: Reading is fine
  - id: deny-env
    match:
      topics: ["job.mcp-bridge.read.*"]
      args: {path: {glob: ["**/.env", ".env"]}}
    decision: deny
    reason: Secrets stay on disk
  - id: allow-writes
    match: {topics: ["job.mcp-bridge.write.*"]}
    decision: allow
    reason: Writes are fine{rule_limits}
  - id: approve-push
    match: {topics: ["job.mcp-bridge.git.push"]}
    decision: require_approval
    reason: Push needs approval
"""

CALLS = [
    ("filesystem", "read_file", {"path": "src/app.py"}),
    ("filesystem", "read_file", {"path": "src/.env"}),
    ("filesystem", "write_file", {"path": "src/app.py"}),
    ("filesystem", "write_file", {"path": "README.md"}),
    ("git", "git_push", {"remote": "origin", "branch": "main"}),
    ("shell", "run", {"command": "ls"}),
]
AGENTS = [("claude-code-mo", "payments", "dev"), ("cursor-web", "web", "dev")]
START = dt.datetime(2026, 11, 1, 23, 50, tzinfo=dt.UTC)  # sessions cross midnight (UTC days) too


def policy(*, max_calls=None, max_duration=None, max_writes=None, per_minute=None, rule_max_calls=None,
           rule_per_minute=None, version="candidate"):
    rule = {k: v for k, v in (("max_calls", rule_max_calls), ("per_minute", rule_per_minute)) if v is not None}
    text = POLICY.replace("{rule_limits}", "\n    limits: {" + ", ".join(f"{k}: {v}" for k, v in rule.items()) + "}"
                          if rule else "")
    session = {k: v for k, v in (("max_calls", max_calls), ("max_duration", max_duration),
                                 ("max_writes", max_writes)) if v is not None}
    if session or per_minute is not None:
        text += "limits:\n"
        if session:
            text += "  session: {" + ", ".join(f"{k}: {v}" for k, v in session.items()) + "}\n"
        if per_minute is not None:
            text += f"  rate: {{per_minute: {per_minute}}}\n"
    loaded = load_policy_text(text)
    assert loaded.policy is not None, loaded.errors
    return compile_policy(loaded.policy, version)


def records_of(sessions) -> list[dict]:
    """sessions: [(agent index, start offset, [(call index, gap seconds, recorded), ...]), ...] -> export records.
    Sequence numbers interleave the sessions (the chain is global), as the real export does."""
    timed = []
    for s, (agent, offset, calls) in enumerate(sessions):
        ts = START + dt.timedelta(seconds=offset)
        for call, gap, recorded in calls:
            ts += dt.timedelta(seconds=gap)
            timed.append((ts, s, agent, call, recorded))
    timed.sort(key=lambda x: (x[0], x[1]))
    out = []
    for seq, (ts, s, agent, call, recorded) in enumerate(timed, 1):
        server, tool, args = CALLS[call]
        name, team, env = AGENTS[agent]
        out.append({"record_type": "decision", "seq": seq, "decision_id": f"id-{seq:05d}", "session_id": f"s{s}",
                    "agent": name, "team": team, "environment": env, "server": server, "tool": tool, "args": args,
                    "args_digest": args_digest(args), "decision": recorded,
                    "timestamp": ts.isoformat().replace("+00:00", "Z")})
    return out


optional = st.one_of(st.none(), st.integers(min_value=1, max_value=8))
limits = st.fixed_dictionaries({
    "max_calls": optional, "max_writes": optional, "per_minute": optional, "rule_max_calls": optional,
    "rule_per_minute": optional, "max_duration": st.one_of(st.none(), st.sampled_from([0, 30, 60, 600, 3600])),
})
call = st.tuples(st.integers(0, len(CALLS) - 1), st.sampled_from([0, 1, 5, 20, 59, 60, 61, 300, 900]),
                 st.sampled_from(DECISIONS))
session = st.tuples(st.integers(0, len(AGENTS) - 1), st.integers(0, 1800), st.lists(call, min_size=1, max_size=12))


@settings(max_examples=150, deadline=None)
@given(limits, st.lists(session, min_size=1, max_size=8), st.sampled_from(["recorded", "baseline", "reference"]))
def test_prefiltered_replay_equals_replaying_every_call(candidate_limits, sessions, before):
    candidate = policy(**candidate_limits)
    other = policy(max_calls=4, per_minute=2, version="live")
    kwargs = {"baseline": other} if before == "baseline" else {"reference": other} if before == "reference" else {}
    records = records_of(sessions)
    assert simulate_records(candidate, records, **kwargs) == simulate_records(candidate, records, prefilter=False,
                                                                              **kwargs)


def busy_and_quiet_sessions() -> list:
    """Twenty sessions: most are short and slow; three hit a limit (calls, writes, rate)."""
    quiet = [(i % 2, 60 * i, [(i % 4, 40, "allow"), (2, 90, "allow"), (0, 120, "allow")]) for i in range(17)]
    too_many = (0, 10, [(0, 30, "allow")] * 12)
    too_many_writes = (1, 20, [(2, 30, "allow"), (3, 30, "allow")] * 4)
    too_fast = (0, 30, [(0, 1, "allow")] * 7)
    return [*quiet, too_many, too_many_writes, too_fast]


def test_sessions_that_trip_a_limit_are_replayed_and_the_rest_are_not():
    candidate = policy(max_calls=10, max_writes=5, per_minute=6, max_duration="2h")
    records = records_of(busy_and_quiet_sessions())
    report = simulate_records(candidate, records)
    assert report == simulate_records(candidate, records, prefilter=False)
    limited = {r["rule"] for r in report["changed_by_rule"] if r["rule"].startswith("limits.")}
    assert limited == {"limits.session.max_calls", "limits.session.max_writes", "limits.rate.per_minute"}


@pytest.mark.parametrize(("aggregates", "expected"), [
    ({"calls": 10, "duration": 3600.0, "writes": 5, "busiest": (2, 60)}, False),
    ({"calls": 11, "duration": 60.0, "writes": 0, "busiest": (1, 60)}, True),  # max_calls
    ({"calls": 10, "duration": 60.0, "writes": 6, "busiest": (1, 60)}, True),  # max_writes
    ({"calls": 10, "duration": 60.0}, True),  # writes and busiest minute unknown: bounded by calls
    ({"calls": 7, "duration": 60.0, "writes": 0, "busiest": (3, 60)}, True),  # 3 minutes may hold 9 > 6 calls
    ({"calls": 6, "duration": 60.0, "writes": 0}, False),  # 6 calls cannot exceed 6 per minute
    ({"calls": 5, "duration": 60.0}, False),  # nor can 5 calls exceed 5 writes
    ({"calls": 10, "duration": 60.0, "writes": 0, "busiest": (3, 600)}, False),  # 2 periods: 6 calls
    ({"calls": 10, "duration": 60.0, "writes": 0, "busiest": (4, 600)}, True),
    ({"calls": 2, "duration": 7200.0}, True),  # the duration limit itself (rounding slack)
    ({"calls": 2, "duration": 7199.0}, False),
    ({"calls": 0, "duration": 0.0}, False),
])
def test_the_engine_answers_which_sessions_a_limit_could_touch(aggregates, expected):
    from cordum.policy import LimitsTracker

    tracker = LimitsTracker(policy(max_calls=10, max_writes=5, per_minute=6, max_duration="2h"))
    assert tracker.may_limit(**aggregates) is expected


@pytest.mark.django_db
@pytest.mark.parametrize("baseline", [None, "live"])
def test_the_database_path_prefiltered_equals_replaying_every_call(sim_org, versions, baseline):
    """Twenty sessions in the evidence table, three of which hit a limit: the web path replays only those in
    order, and its report equals replaying every call and the CLI's report on the same records."""
    from django.utils import timezone

    from cordum.decisions.services import evidence_append
    from cordum.simulation import services

    shift = (timezone.now() - dt.timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0) - START
    records = []
    for r in records_of(busy_and_quiet_sessions()):
        ts = dt.datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) + shift
        records.append({**r, "timestamp": ts.isoformat().replace("+00:00", "Z")})
    evidence_append(organization=sim_org, records=[{k: v for k, v in r.items() if k != "seq"} for r in records])
    candidate = policy(max_calls=10, max_writes=5, per_minute=6, max_duration="2h")
    live = policy(max_calls=4, version=versions["live"].version) if baseline else None
    simulation = services.simulation_create(organization=sim_org, user=None, policy_yaml="version: v1",
                                            days=7, enqueue=False)
    fast = services.simulation_replay(simulation=simulation, candidate=candidate, baseline=live)
    full = services.simulation_replay(simulation=simulation, candidate=candidate, baseline=live, prefilter=False)
    assert fast.pop("run")["calls_replayed_in_order"] < full.pop("run")["calls_replayed_in_order"] == len(records)
    assert fast == full
    assert full["summary"]["total_calls"] == len(records)
    if baseline is None:
        assert any(r["rule"] == "limits.rate.per_minute" for r in full["changed_by_rule"])
