"""The one table `make bench` prints: each benchmark records its figures with the baseline measured beside them
in the same run. `bench/run.py` collects them (CORDUM_BENCH_RESULTS names the file); a benchmark run alone
just prints as before."""

from __future__ import annotations

import json
import os


def record(*, benchmark: str, figure: str, value: float, unit: str, baseline: str = "",
           baseline_value: float | None = None, target: str = "", met: bool | None = None) -> None:
    path = os.environ.get("CORDUM_BENCH_RESULTS")
    if not path:
        return
    row = {"benchmark": benchmark, "figure": figure, "value": value, "unit": unit, "baseline": baseline,
           "baseline_value": baseline_value, "target": target, "met": met, "load": os.getloadavg()[0]}
    with open(path, "a") as out:
        out.write(json.dumps(row) + "\n")
