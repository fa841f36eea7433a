"""The law behind the speed: grouping identical signatures gives exactly the matrix of evaluating every call."""

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from cordum.policy import args_digest, compile_policy, evaluate, load_policy_text
from cordum.policy.simulate import DECISIONS, simulate_records
from tests.simulation.data import CANDIDATE_POLICY

CANDIDATE = compile_policy(load_policy_text(CANDIDATE_POLICY).policy, "candidate")
CALLS = [
    ("filesystem", "read_file", {"path": "src/app.py"}),
    ("filesystem", "read_file", {"path": ".env"}),
    ("filesystem", "read_text_file", {"path": "a/b/.env"}),
    ("git", "git_push", {"remote": "origin", "branch": "main"}),
    ("shell", "run", {"command": "ls"}),
    ("terraform", "destroy", {"resource": "db"}),
]
AGENTS = [("claude-code-mo", "payments", "dev"), ("cursor-web", "web", "dev"), ("devin", "platform", "prod")]
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

record = st.tuples(st.sampled_from(CALLS), st.sampled_from(AGENTS), st.sampled_from(DECISIONS),
                   st.integers(min_value=0, max_value=6 * 86400))


@settings(max_examples=60, deadline=None)
@given(st.lists(record, max_size=80))
def test_grouped_replay_equals_evaluating_every_call(rows):
    records, naive = [], {b: dict.fromkeys(DECISIONS, 0) for b in DECISIONS}
    per_day: dict[str, int] = {}
    for i, ((server, tool, args), (agent, team, env), recorded, offset) in enumerate(rows):
        ts = START + dt.timedelta(seconds=offset)
        records.append({"decision_id": f"id-{i:04d}", "seq": i + 1, "server": server, "tool": tool, "args": args,
                        "args_digest": args_digest(args), "agent": agent, "team": team, "environment": env,
                        "session_id": f"s{i % 3}", "decision": recorded, "timestamp": ts.isoformat()})
        after = evaluate(CANDIDATE, {"server": server, "tool": tool, "arguments": args, "agent": agent, "team": team,
                                     "environment": env}).decision
        naive[recorded][after] += 1
        if after == "require_approval":
            per_day[ts.date().isoformat()] = per_day.get(ts.date().isoformat(), 0) + 1
    report = simulate_records(CANDIDATE, records)
    assert report["matrix"] == naive
    assert {d["day"]: d["after"] for d in report["approval_load"]["per_day"] if d["after"]} == per_day
    assert report["summary"]["distinct_signatures"] == len({(r["server"], r["tool"], r["args_digest"], r["agent"])
                                                             for r in records})
    changed = sum(naive[b][a] for b in DECISIONS for a in DECISIONS if a != b)
    assert sum(c["count"] for c in report["changed_calls"]) == changed
