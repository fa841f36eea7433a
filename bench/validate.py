"""Policy validation at size: a generated 10,000-rule safety.yaml (just under the 1 MiB limit) loaded and
validated end to end, beside two baselines from the same run: parsing the same text with libyaml alone (the
floor any validator pays) and the old all-pairs unreachable-rule check on 2,000 rules (10,000 would take
minutes, which is what this replaced).

    .venv/bin/python bench/validate.py [--rules 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import yaml
from results import record

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cordum.policy import load_policy_text  # noqa: E402
from cordum.policy.loader import _Validator  # noqa: E402
from cordum.policy.reachability import covers  # noqa: E402


def generated(n: int, seed: int = 3) -> str:
    """Rules over 3,000 services, a third of them denies, with argument, agent and risk-tag conditions."""
    rnd = random.Random(seed)
    lines = ["version: v1", "defaults: {decision: deny}", "rules:"]
    for i in range(n):
        svc = rnd.randrange(3000)
        topic = f"job.mcp-bridge.svc{svc}.op{rnd.randrange(20)}" if i % 5 else f"job.mcp-bridge.svc{svc}.*"
        extra = ["", f", args: {{size: {{gt: {rnd.randrange(100)}}}}}", f", args: {{path: {{prefix: [/data/{i % 97}/]}}}}",
                 f", agents: [agent-{rnd.randrange(50)}]", f", risk_tags: [tag{rnd.randrange(9)}]"][i % 5]
        decision = ("allow", "require_approval", "deny")[rnd.randrange(3)]
        lines.append(f"  - {{id: r{i}, match: {{topics: [{topic}]{extra}}}, decision: {decision}}}")
    return "\n".join(lines) + "\n"


def all_pairs(rules) -> int:
    """The check before the index: every enforced rule against every enforced deny."""
    found = 0
    for j, r in enumerate(rules):
        if r.mode != "enforce":
            continue
        for i, d in enumerate(rules):
            if i == j or d.mode != "enforce" or d.decision != "deny" or (r.decision == "deny" and i > j):
                continue
            if covers(d.match, r.match):
                found += 1
                break
    return found


def seconds(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    text = generated(args.rules)
    result = load_policy_text(text, "generated.yaml")
    unreachable = sum("is unreachable" in e.message for e in result.errors)
    print(f"{args.rules} rules, {len(text.encode()):,} bytes, {unreachable} reported unreachable")
    full = seconds(lambda: load_policy_text(text, "generated.yaml"), args.rounds)
    parse = seconds(lambda: yaml.compose(text, Loader=yaml.CSafeLoader), args.rounds)
    print(f"  load + validate (Cordum)        {full:8.3f} s")
    print(f"  libyaml parse only (baseline)   {parse:8.3f} s")
    record(benchmark="validate", figure=f"load and validate {args.rules:,} rules", value=full, unit="s",
           baseline="libyaml parse of the same text", baseline_value=parse, target="< 2 s", met=full < 2)

    small = generated(2_000)
    policy = _Validator("g.yaml").policy(yaml.compose(small, Loader=yaml.CSafeLoader))  # kept despite its errors
    indexed = seconds(lambda: load_policy_text(small, "g.yaml"), args.rounds)
    pairs = seconds(lambda: all_pairs(policy.rules), 1)
    print(f"  2,000 rules, load + validate    {indexed:8.3f} s")
    print(f"  2,000 rules, all-pairs check    {pairs:8.3f} s  (the check alone, before the index)")
    record(benchmark="validate", figure="load and validate 2,000 rules", value=indexed, unit="s",
           baseline="all-pairs unreachable check alone", baseline_value=pairs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
