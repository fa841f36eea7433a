"""Property-based laws of the combining rules (hypothesis)."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cordum.policy import Call, Match, Policy, Rule, compile_policy, evaluate
from cordum.policy.model import Defaults

SEGMENTS = ["read", "write", "git", "infra", "env", "push", "destroy"]
TAGS = ["deploy", "credentials", "code-change", "destructive"]

topics = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map(lambda s: "job.mcp-bridge." + ".".join(s))
patterns = st.one_of(
    topics,
    st.sampled_from(["job.mcp-bridge.*", "*", "job.mcp-bridge.read.*", "job.mcp-bridge.*.destroy", "job.mcp-bridge.git.?ush"]),
)
decisions = st.sampled_from(["allow", "require_approval", "deny"])


@st.composite
def rules(draw, prefix="r"):
    n = draw(st.integers(min_value=0, max_value=6))
    out = []
    for i in range(n):
        out.append(
            Rule(
                id=f"{prefix}{i}",
                decision=draw(decisions),
                match=Match(
                    topics=tuple(draw(st.lists(patterns, min_size=0, max_size=2))),
                    risk_tags=tuple(draw(st.lists(st.sampled_from(TAGS), max_size=2, unique=True))),
                    agents=tuple(draw(st.sampled_from([[], ["claude*"], ["cursor"]]))),
                ),
                mode=draw(st.sampled_from(["enforce", "enforce", "shadow"])),
            )
        )
    return out


calls = st.builds(
    lambda topic, tags, agent: Call(topic=topic, risk_tags=tuple(tags), agent=agent),
    topics,
    st.lists(st.sampled_from(TAGS), max_size=2, unique=True),
    st.sampled_from(["claude-code", "cursor", "devin"]),
)
RANK = {"allow": 0, "require_approval": 1, "deny": 2}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decide(rule_list, call, default="deny"):
    return evaluate(compile_policy(Policy(defaults=Defaults(decision=default), rules=tuple(rule_list))), call)


@SETTINGS
@given(rules(), calls, st.data())
def test_adding_a_deny_rule_never_turns_a_deny_into_an_allow_or_loosens_anything(rule_list, call, data):
    before = decide(rule_list, call)
    extra = data.draw(rules(prefix="extra"))
    extra = [Rule(id=r.id, decision="deny", match=r.match) for r in extra]
    position = data.draw(st.integers(min_value=0, max_value=len(rule_list)))
    after = decide(rule_list[:position] + extra + rule_list[position:], call)
    if before.decision == "deny":
        assert after.decision == "deny"
    if before.rule is not None:  # a matched decision can only get stricter
        assert RANK[after.decision] >= RANK[before.decision]


@SETTINGS
@given(rules(), calls, st.data())
def test_shadow_rules_never_change_the_decision(rule_list, call, data):
    enforce_only = [r for r in rule_list if r.mode == "enforce"]
    extra = [Rule(id=r.id, decision=r.decision, match=r.match, mode="shadow") for r in data.draw(rules(prefix="s"))]
    a = decide(enforce_only, call)
    b = decide(enforce_only + extra, call)
    c = decide(extra + enforce_only, call)
    assert (a.decision, a.rule, a.matched) == (b.decision, b.rule, b.matched) == (c.decision, c.rule, c.matched)


@SETTINGS
@given(rules(), calls, st.randoms(use_true_random=False))
def test_order_only_breaks_ties(rule_list, call, rnd):
    shuffled = list(rule_list)
    rnd.shuffle(shuffled)
    a, b = decide(rule_list, call), decide(shuffled, call)
    assert a.decision == b.decision
    assert set(a.matched) == set(b.matched)
    if a.rule is not None:
        # the winner is the first rule (in file order) among the most restrictive matches
        by_id = {r.id: r for r in rule_list}
        strict = [m for m in a.matched if by_id[m].decision == a.decision]
        assert a.rule == strict[0]


@SETTINGS
@given(rules(), calls, decisions)
def test_an_unmatched_call_gets_the_default(rule_list, call, default):
    d = decide(rule_list, call, default)
    if not d.matched:
        assert d.decision == default and d.rule is None
    unmatched = Call(topic="zzz.never.matched", agent="nobody")
    only_specific = [r for r in rule_list if r.match.topics and all(p.startswith("job.") for p in r.match.topics)]
    d2 = decide(only_specific, unmatched, default)
    assert d2.decision == default and d2.rule is None and d2.matched == ()


@SETTINGS
@given(rules(), calls)
def test_decision_is_the_most_restrictive_of_the_matched_rules(rule_list, call):
    d = decide(rule_list, call)
    if d.matched:
        by_id = {r.id: r for r in rule_list}
        assert RANK[d.decision] == max(RANK[by_id[m].decision] for m in d.matched)
