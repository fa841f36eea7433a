"""Simulation speed: replay 1,000,000 recorded calls from PostgreSQL against a candidate policy.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/simulate.py [--rows 1000000]

Creates (and afterwards drops, unless --keep) its own database `<name>_bench_simulate` next to DATABASE_URL's,
runs the real migrations, COPYs synthetic decision records into the real (partitioned) evidence table, then
times in the same run:

  grouped   the product path, `simulation_run`: count, GROUP BY signature/decision/day in SQL streamed through a
            server-side cursor, one evaluation per distinct signature, progress written to the row;
  naive     the baseline: stream every row through a server-side cursor and evaluate each one;
  limits    the product path for a candidate with the template's session/rate limits: per-session aggregates
            in SQL, the engine's `LimitsTracker.may_limit` picks the sessions a limit could touch, only those
            are streamed in (session, time) order through the LimitsTracker, the rest grouped in SQL;
  limits, every call replayed   the same candidate with the prefilter off (every row in session order), the
            previous product path, for comparison (--skip-limits skips both limits runs).

The grouped and naive transition matrices are checked to be equal, and so are the two limits reports.
No figure is asserted; they are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
from results import record

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AGENTS = [(f"{kind}-{i}", team, env) for i, (kind, team, env) in enumerate(
    [(k, t, e) for k in ("claude-code", "cursor", "devin", "codex") for t in ("payments", "platform", "web",
                                                                                 "data", "mobile")
     for e in ("dev", "staging")]
)]  # 40 agents


def call_pool(rng: random.Random) -> list[tuple[str, str, dict]]:
    """(server, tool, args) shapes an agent fleet really sends, with realistic argument variety."""
    files = [f"src/{m}/{f}.py" for m in ("api", "billing", "core", "ui", "jobs") for f in
             ("models", "views", "utils", "tasks", "tests", "settings", "urls", "forms")]
    pool: list[tuple[str, str, dict]] = []
    for path in files:
        pool.append(("filesystem", "read_text_file", {"path": path}))
        pool.append(("filesystem", "write_file", {"path": path, "content": "<redacted>"}))
        pool.append(("filesystem", "edit_file", {"path": path, "edits": "<redacted>"}))
    for path in (".env", "deploy/.env.prod", "keys/server.pem", "/home/dev/.ssh/id_rsa", "../outside/notes.md",
                 "/etc/passwd"):
        pool.append(("filesystem", "read_text_file", {"path": path}))
        pool.append(("filesystem", "write_file", {"path": path, "content": "<redacted>"}))
    for tool in ("git_status", "git_log", "git_diff", "git_branch"):
        pool.append(("git", tool, {"repo_path": "."}))
    for branch in ("main", "develop", "release", "feature-a", "feature-b"):
        pool.append(("git", "git_push", {"remote": "origin", "branch": branch}))
        pool.append(("git", "git_push", {"remote": "origin", "branch": branch, "force": True}))
    for cmd in ("pytest -q", "make build", "npm test", "ls -la", "terraform plan", "kubectl get pods"):
        pool.append(("shell", "exec", {"command": cmd}))
    for res in ("db-main", "cache", "bucket-logs"):
        pool.append(("terraform", "destroy", {"resource": res}))
    rng.shuffle(pool)
    return pool


def policies():
    from cordum.policy import compile_policy, load_policy_file, policy_from_dict

    base = load_policy_file(ROOT / "policies_repo_template" / "safety.yaml")
    assert base.ok, base.errors
    d = base.policy.to_dict()
    cand = json.loads(json.dumps(d))
    # Without limits the replay is stateless and fully grouped; the limits figure uses `limited` below.
    cand["limits"] = {"session": {"max_calls": None, "max_duration": None, "max_writes": None},
                      "rate": {"per_minute": None}}
    for rule in cand["rules"]:
        if rule["id"] == "approve-shell":
            rule["mode"] = "enforce"  # the candidate switches the shadow rule on
    cand["rules"].append({
        "id": "deny-force-push", "match": {"topics": ["job.mcp-bridge.git.force-push"]}, "decision": "deny",
        "reason": "No force pushes", "mode": "enforce",
    })
    cand["rules"].append({
        "id": "deny-terraform-in-staging", "match": {"topics": ["job.mcp-bridge.terraform.*"],
                                                    "environments": ["staging"]},
        "decision": "deny", "reason": "No terraform from staging agents", "mode": "enforce",
    })
    limited = json.loads(json.dumps(cand))
    limited["limits"] = d["limits"]  # the template's session and rate limits
    return (compile_policy(base.policy, "main@base"), compile_policy(policy_from_dict(cand), "proposed@cand"),
            json.dumps(cand), json.dumps(limited))


def bench_database(url: str) -> tuple[str, str, str]:
    parsed = urlparse(url)
    name = (parsed.path.lstrip("/") or "postgres") + "_bench_simulate"
    admin = urlunparse(parsed._replace(path="/postgres"))
    return name, urlunparse(parsed._replace(path=f"/{name}")), admin


def load_rows(n_rows: int, org_id: int, baseline, seed: int = 7) -> int:
    """COPY n_rows synthetic decision records (Zipf-like repetition); returns distinct signatures used."""
    from django.db import connection

    from cordum.policy import args_digest, evaluate

    rng = random.Random(seed)
    pool = call_pool(rng)
    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(days=6, hours=23)
    span = (now - start).total_seconds() - 60
    # Per agent, a working set of the pool: realistic repetition, thousands of distinct signatures overall.
    sigs = []
    for agent, team, env in AGENTS:
        for server, tool, args in rng.sample(pool, k=min(len(pool), 110)):
            digest = args_digest(args)
            decision = evaluate(baseline, {"server": server, "tool": tool, "arguments": args, "agent": agent,
                                           "team": team, "environment": env})
            sigs.append((agent, team, env, server, tool, digest, json.dumps(args, sort_keys=True,
                                                                              separators=(",", ":")),
                         decision.decision, decision.rule or "", decision.topic))
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(sigs))]
    rng.shuffle(sigs)
    picks = rng.choices(range(len(sigs)), weights=weights, k=n_rows)
    times = sorted(start + dt.timedelta(seconds=rng.random() * span) for _ in range(n_rows))
    cols = ("organization_id, seq, recorded_at, prev_hash, hash, record_type, decision_id, agent_name, team_slug, "
            "environment, session_id, sidecar_id, action, target, server, tool, args_digest, args, topic, risk_tags, "
            "decision, rule, reason, policy_version, mode, shadow, outcome, reviewer, comment, error, timestamp")
    zero = "0" * 64
    with connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY decisions_evidencerecord ({cols}) FROM STDIN"
    ) as copy:
        for i, (pick, ts) in enumerate(zip(picks, times, strict=True)):
            agent, team, env, server, tool, digest, args, decision, rule, topic = sigs[pick]
            session = f"sess_{agent}_{int((ts - start).total_seconds() // 3600)}"  # one session per agent-hour
            copy.write_row((org_id, i + 1, now, zero, zero, "decision", str(uuid.UUID(int=rng.getrandbits(128))),
                            agent, team, env, session, "sc-bench", "", "", server, tool, digest, args, topic, "[]",
                            decision, rule, "", "main@base", "enforce", "[]", "", "", "", "", ts))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE decisions_evidencerecord")
    return len({picks_i for picks_i in picks})


def naive(simulation, candidate) -> tuple[dict, int]:
    """Baseline: every row through a server-side cursor, one evaluation per row."""
    from cordum.policy import evaluate
    from cordum.policy.simulate import DECISIONS
    from cordum.simulation.selectors import Window, _stream, _table

    where, params = Window.of(simulation).where()
    matrix = {b: dict.fromkeys(DECISIONS, 0) for b in DECISIONS}
    n = 0
    for server, tool, args, agent, team, env, root, decision in _stream(
        f"SELECT server, tool, args, agent_name, team_slug, environment, root, decision FROM {_table()} WHERE {where}",
        params,
    ):
        d = evaluate(candidate, {"server": server, "tool": tool, "arguments": json.loads(args) if args else {},
                                 "agent": agent, "team": team, "environment": env, "root": root})
        matrix[decision][d.decision] += 1
        n += 1
    return matrix, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--skip-limits", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="reuse a database kept by --keep (skip the load)")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    name, bench_url, admin_url = bench_database(url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        reuse = bool(args.reuse and exists)
        if not reuse:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = bench_url
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cordum.settings")
    os.environ.pop("CORDUM_TEST_DB_NAME", None)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    try:
        call_command("migrate", verbosity=0)
        from cordum.accounts.models import Organization
        from cordum.simulation import services

        baseline, candidate, candidate_yaml, limited_yaml = policies()
        if reuse:
            org = Organization.objects.get(slug="bench")
            print("reusing the recorded calls of the kept bench database")
        else:
            org = Organization.objects.create(name="Bench", slug="bench")
            t0 = time.perf_counter()
            distinct = load_rows(args.rows, org.pk, baseline)
            load_s = time.perf_counter() - t0
            print(f"loaded {args.rows:,} recorded calls ({distinct:,} distinct signatures) with COPY in {load_s:.1f} s")

        sim = services.simulation_create(organization=org, user=None, policy_yaml=candidate_yaml, enqueue=False)
        t0 = time.perf_counter()
        sim = services.simulation_run(simulation=sim)
        grouped_s = time.perf_counter() - t0
        assert sim.status == "completed", sim.error
        report = sim.report

        t0 = time.perf_counter()
        naive_matrix, naive_n = naive(sim, candidate)
        naive_s = time.perf_counter() - t0
        agree = naive_matrix == report["matrix"] and naive_n == report["summary"]["total_calls"]

        print()
        print(f"{'approach':<44}{'seconds':>10}{'calls/s':>14}{'evaluations':>14}")
        print(f"{'grouped in SQL + server-side cursor (product)':<44}{grouped_s:>10.2f}"
              f"{report['summary']['total_calls'] / grouped_s:>14,.0f}{report['run']['evaluations']:>14,}")
        print(f"{'naive: every row evaluated (baseline)':<44}{naive_s:>10.2f}{naive_n / naive_s:>14,.0f}"
              f"{naive_n:>14,}")
        total = report["summary"]["total_calls"]
        record(benchmark="simulate", figure=f"replay {total:,} recorded calls", value=grouped_s, unit="s",
               baseline="naive per-call replay", baseline_value=naive_s,
               target="<= 10 s for 10M" if total >= 10_000_000 else "", met=(grouped_s <= 10) if total >= 10_000_000
               else None)
        if not args.skip_limits:
            lim = services.simulation_create(organization=org, user=None, policy_yaml=limited_yaml, enqueue=False)
            t0 = time.perf_counter()
            lim = services.simulation_run(simulation=lim)
            limits_s = time.perf_counter() - t0
            assert lim.status == "completed", lim.error
            in_order = lim.report["run"]["calls_replayed_in_order"]
            print(f"{'limits candidate (product, prefiltered)':<44}{limits_s:>10.2f}"
                  f"{lim.report['summary']['total_calls'] / limits_s:>14,.0f}{lim.report['run']['evaluations']:>14,}"
                  f"   ({in_order:,} calls replayed in order)")
            t0 = time.perf_counter()
            full = services.simulation_replay(simulation=lim, candidate=services.policy_text_compile(text=limited_yaml),
                                              prefilter=False)
            full_s = time.perf_counter() - t0
            print(f"{'limits candidate, every call replayed':<44}{full_s:>10.2f}"
                  f"{full['summary']['total_calls'] / full_s:>14,.0f}{full['run']['evaluations']:>14,}")
            fast = {k: v for k, v in lim.report.items() if k not in ("run", "window", "filters")}
            limits_agree = fast == {k: v for k, v in full.items() if k != "run"}
            agree = agree and limits_agree
            record(benchmark="simulate", figure=f"replay {lim.report['summary']['total_calls']:,} calls with limits",
                   value=limits_s, unit="s", baseline="every call replayed in order", baseline_value=full_s,
                   target="<= 5 s for 1M", met=limits_s <= 5)
            print(f"limits: prefiltered report equals every call replayed: {limits_agree}; target <= 10 s: "
                  f"{'met' if limits_s <= 10 else 'NOT met'}")
        print()
        print(f"speed-up grouped vs naive: {naive_s / grouped_s:.1f}x; matrices agree: {agree}; "
              f"distinct signatures evaluated: {report['summary']['distinct_signatures']:,}; "
              f"changed calls: {report['summary']['changed_calls']:,}; target <= 10 s: "
              f"{'met' if grouped_s <= 10 else 'NOT met'}")
        print("matrix (before -> after):", json.dumps(report["matrix"]))
        return 0 if agree else 1
    finally:
        connection.close()
        if not (args.keep or args.reuse):
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    raise SystemExit(main())
