"""Evidence ingestion throughput: HTTP POST -> gunicorn -> IngestBatch -> Celery -> chained COPY into PostgreSQL,
printed beside a bare COPY of the same records into the same table of the same database in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/4 \
        .venv/bin/python bench/ingest.py [--records 200000] [--batch 1000] [--clients 4] [--web 2] [--workers 1]

It creates (and afterwards drops) its own database `<name>_bench_ingest` next to DATABASE_URL's, runs the real
migrations, starts real gunicorn and Celery worker processes, and counts a record as ingested once it is
chained (ChainHead.seq). No figure is asserted; they are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import orjson
import psycopg
from results import record

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.support.procs import stop_process_groups  # noqa: E402
from cordum.sidecar.ids import uuid7_str  # noqa: E402 - ids as the sidecar makes them (time-ordered)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_records(n: int) -> list[dict]:
    base = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    decisions = ["allow"] * 8 + ["require_approval", "deny"]
    out = []
    for i in range(n):
        decision = decisions[i % 10]
        out.append({
            "record_type": "decision", "decision_id": uuid7_str(), "agent": "claude-code-bench",
            "session_id": f"sess_{i // 200}", "team": "payments", "environment": "dev", "action": "git.push",
            "target": f"origin/feature-{i % 97}", "server": "git", "tool": "git_push",
            "args_digest": "sha256:" + uuid.uuid4().hex + uuid.uuid4().hex,
            "args": {"remote": "origin", "branch": f"feature-{i % 97}"}, "topic": "job.mcp-bridge.git.push",
            "risk_tags": ["deploy"], "decision": decision,
            "rule": None if decision == "allow" else "approve-git-push", "reason": "Git push to remote requires approval",
            "policy_version": "v1.7.1@3f2c1ab", "mode": "enforce", "shadow": [], "reviewer": None, "outcome": None,
            "timestamp": (base + dt.timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
            "latency_us": 41, "sidecar_id": "sc-bench",
        })
    return out


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--web", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    parser.add_argument("--shutdown-grace", type=float, default=20.0,
                        help="seconds gunicorn/celery get to stop after SIGTERM before they are killed")
    parser.add_argument("--chain-timeout", type=float, default=600.0,
                        help="give up waiting for the worker to chain every record after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/4")
    parsed = urlparse(base_url)
    db_name = (parsed.path.lstrip("/") or "postgres") + "_bench_ingest"
    admin_url = urlunparse(parsed._replace(path="/postgres"))
    bench_url = urlunparse(parsed._replace(path="/" + db_name))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')
    env = {**os.environ, "DATABASE_URL": bench_url, "REDIS_URL": redis_url, "CORDUM_LOG_LEVEL": "WARNING",
           "CORDUM_DEBUG": "0",  # production-like: no per-query debug bookkeeping
           "DB_CONN_MAX_AGE": "600"}
    subprocess.run([PY, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)

    # Org, team, agent with a real token, created by the product's own services.
    os.environ.update({"DATABASE_URL": bench_url, "REDIS_URL": redis_url})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cordum.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from cordum.accounts import services as accounts
    from cordum.accounts.models import Team
    from cordum.decisions import storage
    from cordum.decisions.services import _unstage, format_ts, records_validate, stage_records

    org = accounts.organization_create(name="Bench", slug="bench")
    baseline_org = accounts.organization_create(name="Bench COPY baseline", slug="bench-copy")
    team = Team.objects.create(organization=org, name="Payments", slug="payments")
    agent, issued = accounts.agent_create(organization=org, actor=None, name="claude-code-bench", kind="claude-code",
                                          team=team)
    import redis

    redis.Redis.from_url(redis_url).delete("celery")  # stale messages from an earlier interrupted run

    print(f"generating {args.records:,} records …", flush=True)
    records = make_records(args.records)
    bodies = [orjson.dumps({"records": records[i:i + args.batch]}) for i in range(0, len(records), args.batch)]

    port = free_port()
    procs = [
        subprocess.Popen([PY, "-m", "gunicorn", "cordum.wsgi", "-w", str(args.web), "-b", f"127.0.0.1:{port}",
                          "--log-level", "warning", "--backlog", "256"], cwd=ROOT, env=env, start_new_session=True),
        subprocess.Popen([PY, "-m", "celery", "-A", "cordum", "worker", "-c", str(args.workers), "-P", "prefork",
                          "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                         cwd=ROOT, env=env, start_new_session=True),
    ]
    try:
        url = f"http://127.0.0.1:{port}/api/v1/decisions"
        headers = {"Authorization": f"Bearer {issued.plaintext}", "Content-Type": "application/json"}
        with httpx.Client() as probe:  # wait for gunicorn to listen
            for _ in range(300):
                try:
                    probe.get(f"http://127.0.0.1:{port}/login/", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
        # Warm-up (connections, imports, partitions) with a small batch outside the measurement.
        warm = orjson.dumps({"records": make_records(100)})
        with httpx.Client() as c:
            assert c.post(url, content=warm, headers=headers).status_code == 202
        expected = 100 + len(records)
        chain_seq = _seq_reader(bench_url, org.pk)
        while chain_seq() < 100:
            time.sleep(0.05)

        queue = list(enumerate(bodies))
        lock = threading.Lock()
        errors: list[str] = []

        def client():
            with httpx.Client(timeout=120) as c:
                while True:
                    with lock:
                        if not queue:
                            return
                        _, body = queue.pop(0)
                    r = c.post(url, content=body, headers=headers)
                    if r.status_code != 202:
                        errors.append(f"{r.status_code} {r.text[:200]}")

        print(f"POSTing {len(bodies)} batches of {args.batch} with {args.clients} clients "
              f"(gunicorn x{args.web}, celery x{args.workers}) …", flush=True)
        cpu_before = {name: _tree_cpu(p.pid) for name, p in zip(("web", "celery"), procs, strict=True)}
        cpu_before["postgres"] = _user_cpu("postgres")
        cpu_before["bench client"] = _self_cpu()
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_accepted = time.perf_counter() - t0
        chain_deadline = time.monotonic() + args.chain_timeout
        while chain_seq() < expected and not errors and time.monotonic() < chain_deadline:
            time.sleep(0.02)
        t_chained = time.perf_counter() - t0
        if chain_seq() < expected:
            errors.append(f"only {chain_seq() - 100:,} of {len(records):,} records chained within "
                          f"--chain-timeout {args.chain_timeout:g} s")
        cpu_after = {name: _tree_cpu(p.pid) for name, p in zip(("web", "celery"), procs, strict=True)}
        cpu_after["postgres"] = _user_cpu("postgres")
        cpu_after["bench client"] = _self_cpu()
        if errors:
            raise SystemExit(f"upload errors: {errors[:3]}")
        print(f"accepted in {t_accepted:.2f} s, chained in {t_chained:.2f} s", flush=True)
    finally:
        stop_process_groups(procs, grace=args.shutdown_grace)

    # Baseline: bare COPY of the same records (already validated, hashed and formatted: only the database's
    # work is timed) into the same partitioned, indexed, triggered table of the same database.
    entries = []
    for start in range(0, len(records), 5000):
        ids, rows = records_validate(records=records[start:start + 5000], agent=agent)
        entries.extend(_unstage("\n".join(stage_records(ids, rows)).encode()))
    now, prev, lines = format_ts(dt.datetime.now(dt.UTC)), "0" * 64, []
    for seq, (_rid, body, tail) in enumerate(entries, start=1):
        document = f'{{"body":{body},"chain":{{"organization_id":{baseline_org.pk},"recorded_at":"{now}","seq":{seq}}}}}'
        digest = hashlib.sha256((prev + document).encode()).hexdigest()
        lines.append(f"{baseline_org.pk}\t{seq}\t{now}\t{prev}\t{digest}\t{tail}")
        prev = digest
    payload = ("\n".join(lines) + "\n").encode()
    with psycopg.connect(bench_url) as conn:
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY {storage.TABLE} ({', '.join(storage.COLUMNS)}) FROM STDIN") as cp:
            view = memoryview(payload)
            for start in range(0, len(view), 1 << 20):
                cp.write(view[start:start + (1 << 20)])
        conn.commit()
        t_copy = time.perf_counter() - t0
        stored = conn.execute(f"SELECT count(*) FROM {storage.TABLE} WHERE organization_id = %s", [org.pk]).fetchone()[0]

    n = len(records)
    pipeline, copy_rate = n / t_chained, n / t_copy
    print()
    print(f"records                                   {n:>12,}   (batches of {args.batch}, {stored:,} stored once each)")
    print(f"HTTP POST accepted (202, durably queued)  {n / t_accepted:>12,.0f} rec/s   {t_accepted:6.2f} s")
    print(f"POST -> Celery -> chained in PostgreSQL   {pipeline:>12,.0f} rec/s   {t_chained:6.2f} s")
    print(f"bare COPY, same records, same table       {copy_rate:>12,.0f} rec/s   {t_copy:6.2f} s")
    print(f"pipeline / bare COPY                      {pipeline / copy_rate:>12.2f} x")
    record(benchmark="ingest", figure="HTTP -> Celery -> chained in PostgreSQL", value=pipeline, unit="rec/s",
           baseline="bare COPY, same rows and table", baseline_value=copy_rate,
           target=">= 20,000 rec/s and >= 0.7x COPY", met=pipeline >= 20_000 and pipeline / copy_rate >= 0.7)
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.1f} before the run "
          "(other processes share them); target >= 20,000 rec/s and >= 0.3x COPY")
    print("CPU seconds during the pipeline run: " + ", ".join(
        f"{name} {cpu_after[name] - cpu_before[name]:.1f}" for name in cpu_after))
    django.db.connections.close_all()
    if not args.keep:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (gunicorn/celery workers)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += _proc_cpu(current)
        try:
            todo += [int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
        except OSError:
            pass
    return total


def _user_cpu(user: str) -> float:
    import pwd

    uid = pwd.getpwnam(user).pw_uid
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    total += _proc_cpu(int(entry.name))
            except OSError:
                pass
    return total


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _seq_reader(url: str, organization_id: int):
    conn = psycopg.connect(url, autocommit=True)

    def read() -> int:
        row = conn.execute("SELECT seq FROM decisions_chainhead WHERE organization_id = %s", [organization_id]).fetchone()
        return row[0] if row else 0

    return read


if __name__ == "__main__":
    io.DEFAULT_BUFFER_SIZE = 1 << 16
    main()
