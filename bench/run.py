"""`make bench`: runs every benchmark in bench/ and writes one table of their figures, each beside its baseline
from the same run, with the machine's load, to .cordum/bench/report.md and report.json.

A benchmark that fails is reported as failed and the others still run; the exit code says whether all ran.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ["policy_eval.py", "validate.py", "result_scan.py", "sidecar_overhead.py", "simulate.py", "ingest.py", "propagation.py"]
TIME_LIMIT = 30 * 60  # one benchmark; a busy 2-core machine is slow, a hung one is stopped


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and abs(value) < 100:
        return f"{value:.3g}"
    return f"{value:,.0f}" if isinstance(value, int | float) else str(value)


def main() -> int:
    out_dir = ROOT / ".cordum" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.jsonl"
    results.unlink(missing_ok=True)
    runs = []
    for name in BENCHMARKS:
        script = ROOT / "bench" / name
        if not script.exists():
            continue
        print(f"== bench/{name}", flush=True)
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        try:
            done = subprocess.run([sys.executable, str(script)], cwd=ROOT, timeout=TIME_LIMIT,
                                  env={**os.environ, "CORDUM_BENCH_RESULTS": str(results)}, check=False)
            status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        except subprocess.TimeoutExpired:
            status = f"stopped after {TIME_LIMIT} s"
        runs.append({"benchmark": name.removesuffix(".py"), "status": status, "load_before": load_before,
                     "load_after": os.getloadavg()[0], "seconds": round(time.monotonic() - started, 1)})
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "runs": runs, "figures": rows,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    lines = [f"# `make bench` — {report['date']}", "",
             f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}.", "",
             "| benchmark | figure | Cordum | baseline (same run) | target | met | load |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        baseline = f"{r['baseline']}: {_fmt(r['baseline_value'])}" if r["baseline"] else ""
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['benchmark']} | {r['figure']} | {_fmt(r['value'])} {r['unit']} | {baseline} | "
                     f"{r['target']} | {met} | {r['load']:.1f} |")
    lines += ["", "| benchmark | status | seconds | load before → after |", "|---|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['status']} | {r['seconds']} | {r['load_before']:.1f} → {r['load_after']:.1f} |"
              for r in runs]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten: {out_dir / 'report.md'} and report.json")
    return 0 if all(r["status"] == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
