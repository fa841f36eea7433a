"""Policy decision benchmark: Cordum's evaluator next to cedarpy deciding an equivalent policy.

    make bench            # or: .venv/bin/python bench/policy_eval.py [--n 20000]

Two policies: the template (policies_repo_template/safety.yaml, the brief's rules plus the tool map,
a blast-radius rule and a shadow rule) and a generated 500-rule policy with argument conditions. Each
is translated to Cedar (permit for allow, permit annotated @approval for require_approval, forbid for
deny: Cedar's forbid-overrides-permit is the same deny-overrides combination), and both engines decide
the same inputs in the same run. Every decision is cross-checked; the run fails on any disagreement.

Cordum is timed per call with time.perf_counter_ns (p50/p99 over all calls, decisions/s from the
total), in three modes: full MCP calls through the tool map, topic-level inputs (what Cedar gets:
the tool map's topic, tags and precomputed path facts), and topic-level with every cache cleared
before each call (cold). cedarpy is timed per call (is_authorized, pre-parsed PolicySet and
Entities) and in batches of 100 (is_authorized_batch; per-decision cost = batch time / 100).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

from results import record

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cordum.policy import Call, compile_policy, load_policy_file, load_policy_text  # noqa: E402
from cordum.policy.testing import load_cases, repo_test_files  # noqa: E402

try:
    import cedarpy
except ImportError:  # pragma: no cover
    cedarpy = None


def pct(sorted_ns: list[int], p: float) -> float:
    i = min(len(sorted_ns) - 1, int(round(p / 100.0 * (len(sorted_ns) - 1))))
    return sorted_ns[i] / 1000.0


def time_single(fn, inputs, rounds: int) -> dict:
    samples = []
    pc = time.perf_counter_ns
    total0 = pc()
    for _ in range(rounds):
        for x in inputs:
            t0 = pc()
            fn(x)
            samples.append(pc() - t0)
    total = pc() - total0
    samples.sort()
    return {"n": len(samples), "p50": pct(samples, 50), "p99": pct(samples, 99),
            "mean": statistics.fmean(samples) / 1000.0, "per_s": len(samples) / (total / 1e9)}


def time_cold(compiled, inputs, rounds: int) -> dict:
    samples = []
    pc = time.perf_counter_ns
    for _ in range(rounds):
        for x in inputs:
            compiled._tool_cache.clear()
            compiled._topic_cache.clear()
            compiled._static_cache.clear()
            t0 = pc()
            compiled.evaluate(x)
            samples.append(pc() - t0)
    samples.sort()
    mean = statistics.fmean(samples)
    return {"n": len(samples), "p50": pct(samples, 50), "p99": pct(samples, 99), "mean": mean / 1000.0,
            "per_s": 1e9 / mean}


def time_batch(fn, inputs, batch: int, rounds: int) -> dict:
    per = []
    pc = time.perf_counter_ns
    total_n, total_t = 0, 0
    for _ in range(rounds):
        for i in range(0, len(inputs), batch):
            chunk = inputs[i : i + batch]
            t0 = pc()
            fn(chunk)
            dt = pc() - t0
            per.append(dt / len(chunk))
            total_n += len(chunk)
            total_t += dt
    per.sort()
    return {"n": total_n, "p50": pct(per, 50), "p99": pct(per, 99), "mean": total_t / total_n / 1000.0,
            "per_s": total_n / (total_t / 1e9)}


# -- Cedar translation ---------------------------------------------------------------------------
def _cedar_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _topic_expr(patterns) -> str:
    parts = []
    for p in patterns:
        p = p.lower()
        if any(c in p for c in "?["):
            raise ValueError(f"no Cedar equivalent for glob {p!r}")
        parts.append(f"context.topic like {_cedar_str(p)}" if "*" in p else f"context.topic == {_cedar_str(p)}")
    return "(" + " || ".join(parts) + ")"


def _outside_fact(cond) -> str:
    """Cedar has no path semantics: each `outside` condition is computed by Cordum's engine and passed as a fact."""
    return "outside_" + "".join(ch if ch.isalnum() else "_" for ch in cond.arg)


def _arg_expr(cond) -> str:
    out = []
    for op, value in cond.ops:
        a = f"context.args.{cond.arg}"
        has = f"context.args has {cond.arg}"
        if op == "gt":
            out.append(f"({has} && {a} > {int(value)})")
        elif op == "prefix":
            out.append("(" + has + " && (" + " || ".join(f"{a} like {_cedar_str(v + '*')}" for v in value) + "))")
        elif op == "equals":
            out.append(f"({has} && {a} == {_cedar_str(value)})")
        elif op == "outside":
            out.append(f"context.facts.{_outside_fact(cond)}")
        else:
            raise ValueError(f"no Cedar translation for operator {op}")
    return " && ".join(out)


def to_cedar(policy) -> str:
    out = []
    for r in policy.rules:
        if r.mode != "enforce":
            continue
        conds = []
        if r.match.topics:
            conds.append(_topic_expr(r.match.topics))
        if r.match.risk_tags:
            conds.append("context.risk_tags.containsAny([" + ", ".join(_cedar_str(t) for t in r.match.risk_tags) + "])")
        for c in r.match.args:
            conds.append(_arg_expr(c))
        effect = "forbid" if r.decision == "deny" else "permit"
        ann = '@approval("true")\n' if r.decision == "require_approval" else ""
        when = " when {\n  " + " &&\n  ".join(conds) + "\n}" if conds else ""
        out.append(f'@id({_cedar_str(r.id)})\n{ann}{effect}(principal, action, resource){when};')
    return "\n\n".join(out)


def cedar_request(topic: str, tags, args: dict, facts: dict) -> dict:
    return {
        "principal": 'Agent::"claude-code"',
        "action": 'Action::"call"',
        "resource": 'Topic::"t"',
        "context": {"topic": topic.lower(), "risk_tags": list(tags), "args": args, "facts": facts},
    }


def cedar_decision(result, approval_ids: set[str]) -> str:
    if result.decision == cedarpy.Decision.Deny:
        return "deny"
    reasons = set(result.diagnostics.reasons)
    return "require_approval" if reasons & approval_ids else "allow"


# -- inputs --------------------------------------------------------------------------------------
def template_inputs(compiled):
    calls = []
    for path in repo_test_files(str(ROOT / "policies_repo_template")):
        cases, errors = load_cases(path)
        assert not errors, errors
        calls.extend(Call.from_dict(c["call"]) for _, c in cases if "call" in c)  # result cases have no call
    from cordum.policy.engine import compile_conditions

    topic_calls, cedar_reqs = [], []
    outside_conds = {_outside_fact(cond): compile_conditions((cond,))[0]
                     for r in compiled.policy.rules for cond in r.match.args
                     if any(op == "outside" for op, _ in cond.ops)}
    for c in calls:
        topic, tags, _target, _w = compiled.map_call(c)
        facts = {name: test(c.arguments, c.root) for name, test in outside_conds.items()}
        # Topic-level input for Cordum; the path facts ride along as argument condition results.
        topic_calls.append(Call(topic=topic, risk_tags=tags, arguments=c.arguments, root=c.root))
        cedar_reqs.append(cedar_request(topic, tags, {}, facts))
    return calls, topic_calls, cedar_reqs


def generated_policy(n_rules: int = 500, seed: int = 7):
    """`n_rules` random rules over 50 services; candidates an earlier deny makes unreachable (a validation
    error) are left out, so the policy is one Cordum would accept."""
    rnd = random.Random(seed)
    decisions = ["allow", "require_approval", "deny"]
    rules: list[list[str]] = []
    for i in range(n_rules * 2):
        svc = i % 50
        topic = f"job.mcp-bridge.svc{svc}.op{rnd.randrange(10)}" if i % 3 else f"job.mcp-bridge.svc{svc}.*"
        lines = [f"  - id: r{i}", "    match:", f'      topics: ["{topic}"]']
        if i % 4 == 0:
            lines.append(f"      risk_tags: [tag{i % 5}]")
        kind = i % 4
        if kind == 1:
            lines.append(f"      args: {{size: {{gt: {rnd.randrange(100)}}}}}")
        elif kind == 2:
            lines.append(f'      args: {{path: {{prefix: ["/data/{i % 7}/"]}}}}')
        elif kind == 3:
            lines.append(f'      args: {{mode: {{equals: "m{i % 5}"}}}}')
        lines.append(f"    decision: {decisions[rnd.randrange(3)]}")
        rules.append(lines)
    while True:
        text = "\n".join(["version: v1", "defaults: {decision: deny}", "rules:",
                          *(line for lines in rules[:n_rules] for line in lines)]) + "\n"
        res = load_policy_text(text, "generated-500.yaml")
        if res.ok:
            return res.policy
        unreachable = {e.message.split("'")[1] for e in res.errors if "is unreachable" in e.message}
        assert unreachable and len(unreachable) == len(res.errors), res.errors[:3]
        rules = [lines for lines in rules if lines[0].split("id: ")[1] not in unreachable]


def generated_inputs(n: int, seed: int = 11):
    rnd = random.Random(seed)
    calls, reqs = [], []
    for _ in range(n):
        topic = f"job.mcp-bridge.svc{rnd.randrange(60)}.op{rnd.randrange(12)}"
        tags = tuple(f"tag{rnd.randrange(8)}" for _ in range(rnd.randrange(2)))
        args = {"size": rnd.randrange(120), "path": f"/data/{rnd.randrange(9)}/f{rnd.randrange(100)}", "mode": f"m{rnd.randrange(7)}"}
        calls.append(Call(topic=topic, risk_tags=tags, arguments=args))
        reqs.append(cedar_request(topic, tags, args, {}))
    return calls, reqs


def row(name: str, r: dict) -> str:
    return f"  {name:<46} {r['per_s']:>12,.0f}/s  p50 {r['p50']:>8.2f} us  p99 {r['p99']:>8.2f} us  mean {r['mean']:>8.2f} us"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000, help="decisions per measurement (approx.)")
    args = ap.parse_args(argv)
    print(f"python {sys.version.split()[0]} on {os.uname().machine}; one thread")

    # --- template policy ---
    tpl = load_policy_file(ROOT / "policies_repo_template")
    assert tpl.ok, tpl.errors
    ct = compile_policy(tpl.policy, "template")
    calls, topic_calls, creqs = template_inputs(ct)
    rounds = max(1, args.n // len(calls))
    results = {}
    results["cordum full MCP call (tool map + rules)"] = time_single(ct.evaluate, calls, rounds)
    results["cordum topic-level (same input as Cedar)"] = time_single(ct.evaluate, topic_calls, rounds)
    results["cordum topic-level, caches cleared (cold)"] = time_cold(ct, topic_calls, max(1, rounds // 10))
    mismatches = 0
    if cedarpy is not None:
        src = to_cedar(tpl.policy)
        ps = cedarpy.PolicySet.from_str(src) if hasattr(cedarpy.PolicySet, "from_str") else src
        ents = cedarpy.Entities.from_json_str("[]") if hasattr(cedarpy, "Entities") else []
        approval_ids = {r.id for r in tpl.policy.rules if r.decision == "require_approval"}
        # Cedar reports policy ids as policy0, policy1... unless @id is honoured; map both.
        id_map = _cedar_ids(tpl.policy)
        approval_ids |= {k for k, v in id_map.items() if v in approval_ids}
        for c, req in zip(topic_calls, creqs, strict=True):
            a = ct.evaluate(c).decision
            b = cedar_decision(cedarpy.is_authorized(req, ps, ents), approval_ids)
            mismatches += a != b
        results["cedarpy is_authorized (single)"] = time_single(lambda r: cedarpy.is_authorized(r, ps, ents), creqs, max(1, rounds // 4))
        results["cedarpy is_authorized_batch (100/batch)"] = time_batch(
            lambda rs: cedarpy.is_authorized_batch(rs, ps, ents), creqs * 2, 100, max(1, rounds // 4))
    print(f"\nTemplate policy: {len(tpl.policy.rules)} rules, {len(tpl.policy.tools)} tool map entries, "
          f"{len(calls)} distinct calls (the template's test cases)")
    for k, v in results.items():
        print(row(k, v))
    if cedarpy is not None:
        print(f"  decisions compared with Cedar: {len(creqs)}, disagreements: {mismatches}")
    full = results["cordum full MCP call (tool map + rules)"]
    cedar = results.get("cedarpy is_authorized (single)", {})
    record(benchmark="policy_eval", figure="one decision, template policy, full MCP call (p50)", value=full["p50"],
           unit="µs", baseline="cedarpy p50", baseline_value=cedar.get("p50"), target="<= 10 µs",
           met=full["p50"] <= 10)
    record(benchmark="policy_eval", figure="one decision, template policy, topic level (p50)",
           value=results["cordum topic-level (same input as Cedar)"]["p50"], unit="µs", baseline="cedarpy p50",
           baseline_value=cedar.get("p50"))

    # --- generated 500-rule policy ---
    gp = generated_policy()
    cg = compile_policy(gp, "generated")
    gcalls, greqs = generated_inputs(2000)
    rounds = max(1, args.n // len(gcalls))
    results = {}
    results["cordum topic-level with arg conditions"] = time_single(cg.evaluate, gcalls, rounds)
    results["cordum, caches cleared (cold)"] = time_cold(cg, gcalls[:500], 1)
    gm = 0
    if cedarpy is not None:
        src = to_cedar(gp)
        ps = cedarpy.PolicySet.from_str(src) if hasattr(cedarpy.PolicySet, "from_str") else src
        ents = cedarpy.Entities.from_json_str("[]") if hasattr(cedarpy, "Entities") else []
        approval_ids = {r.id for r in gp.rules if r.decision == "require_approval"}
        id_map = _cedar_ids(gp)
        approval_ids |= {k for k, v in id_map.items() if v in approval_ids}
        for c, req in zip(gcalls, greqs, strict=True):
            gm += cg.evaluate(c).decision != cedar_decision(cedarpy.is_authorized(req, ps, ents), approval_ids)
        results["cedarpy is_authorized (single)"] = time_single(lambda r: cedarpy.is_authorized(r, ps, ents), greqs[:500], 1)
        results["cedarpy is_authorized_batch (100/batch)"] = time_batch(
            lambda rs: cedarpy.is_authorized_batch(rs, ps, ents), greqs, 100, 1)
    print(f"\nGenerated policy: {len(gp.rules)} rules (3/4 with argument conditions), {len(gcalls)} distinct calls")
    for k, v in results.items():
        print(row(k, v))
    if cedarpy is not None:
        print(f"  decisions compared with Cedar: {len(greqs)}, disagreements: {gm}")
    else:
        print("\ncedarpy is not installed: pip install -r requirements/bench.txt")
    record(benchmark="policy_eval", figure="one decision, 500 rules with argument conditions (p50)",
           value=results["cordum topic-level with arg conditions"]["p50"], unit="µs", baseline="cedarpy p50",
           baseline_value=results.get("cedarpy is_authorized (single)", {}).get("p50"))
    return 1 if (mismatches or gm) else 0


def _cedar_ids(policy) -> dict[str, str]:
    """Cedar names policies policy0, policy1, ... in source order; map those names to rule ids."""
    enforce = [r for r in policy.rules if r.mode == "enforce"]
    return {f"policy{i}": r.id for i, r in enumerate(enforce)}


if __name__ == "__main__":
    sys.exit(main())
