"""Unreachable-rule validation: exactly the pairwise answer, without comparing every rule with every deny."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cordum.policy import load_policy_text, reachability
from cordum.policy.model import ArgCondition, Match, Rule


def pairwise(rules):
    """The definition: the first enforced deny (in policy order) that covers the rule and decides instead."""
    out = []
    for j, r in enumerate(rules):
        if r.mode != "enforce":
            continue
        for i, d in enumerate(rules):
            if i == j or d.mode != "enforce" or d.decision != "deny" or (r.decision == "deny" and i > j):
                continue
            if reachability.covers(d.match, r.match):
                out.append((r.id, d.id))
                break
    return out


globs = st.sampled_from(["*", "**", "job.*", "job.read.*", "job.read.file", "job.READ.file", "job.write.*",
                         "job.?ead.file", "job.[rw]*", "job.read.*.x", "git.*", "git.push"])
names = st.sampled_from(["*", "claude-*", "claude-code", "cursor", "prod", "dev*", "team-a"])
conditions = st.sampled_from([
    ArgCondition("path", (("prefix", ("/etc/",)),)),
    ArgCondition("path", (("prefix", ("/home/",)),)),
    ArgCondition("size", (("gt", 10),)),
])


@st.composite
def rules(draw):
    out = []
    for i in range(draw(st.integers(0, 14))):
        match = Match(
            topics=tuple(draw(st.lists(globs, max_size=2))),
            risk_tags=tuple(draw(st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True))),
            agents=tuple(draw(st.lists(names, max_size=2))),
            teams=tuple(draw(st.lists(names, max_size=1))),
            environments=tuple(draw(st.lists(names, max_size=1))),
            args=tuple(draw(st.lists(conditions, max_size=2, unique_by=lambda c: c.arg))),
        )
        out.append(Rule(id=f"r{i}", match=match, decision=draw(st.sampled_from(["allow", "require_approval", "deny"])),
                        mode=draw(st.sampled_from(["enforce", "enforce", "shadow"]))))
    return tuple(out)


@settings(max_examples=400, deadline=None)
@given(rules())
def test_indexed_check_finds_exactly_the_pairwise_unreachable_rules(policy_rules):
    found = [(r.id, d.id) for r, d in reachability.unreachable_rules(policy_rules)]
    assert found == pairwise(policy_rules)


def _generated(n: int, seed: int = 3) -> str:
    rnd = random.Random(seed)
    lines = ["version: v1", "defaults: {decision: deny}", "rules:"]
    for i in range(n):
        svc = rnd.randrange(400)
        topic = f"job.mcp-bridge.svc{svc}.op{rnd.randrange(20)}" if i % 5 else f"job.mcp-bridge.svc{svc}.*"
        extra = ["", f", args: {{size: {{gt: {rnd.randrange(100)}}}}}", f", agents: [agent-{rnd.randrange(50)}]",
                 f", risk_tags: [tag{rnd.randrange(9)}]"][i % 4]
        decision = ("allow", "require_approval", "deny")[rnd.randrange(3)]
        lines.append(f"  - {{id: r{i}, match: {{topics: [{topic}]{extra}}}, decision: {decision}}}")
    return "\n".join(lines) + "\n"


def test_each_rule_meets_only_the_denies_that_could_cover_it(monkeypatch):
    """10,000 rules, a third of them denies: all pairs would be ~16 million comparisons."""
    calls = 0
    real = reachability.covers

    def counted(d, r):
        nonlocal calls
        calls += 1
        return real(d, r)

    monkeypatch.setattr(reachability, "covers", counted)
    result = load_policy_text(_generated(10_000), "generated.yaml")
    assert any("is unreachable" in e.message for e in result.errors)
    assert calls < 5 * 10_000
