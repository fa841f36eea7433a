"""Result scanning cost: a 64 KB tool result screened for secrets (detect-secrets' detectors in one RE2 pass),
beside the baseline of only parsing and re-serialising the same message (what any inspecting relay pays).

    .venv/bin/python bench/result_scan.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import orjson
from results import record

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cordum.policy.model import ResultSettings  # noqa: E402
from cordum.policy.secrets import screen_result  # noqa: E402

LINE = "    def handle(self, request, *args, **kwargs):  # ordinary source code, no secrets here\n"


def message(secret: bool) -> bytes:
    text = (LINE * (65536 // len(LINE) + 1))[:65536]
    if secret:
        text = text[:32000] + "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n" + text[32000:65536 - 41]
    return orjson.dumps({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": text}],
                                                               "structuredContent": {"content": text}}})


def time_ms(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    settings = ResultSettings()
    print(f"result scanning, 64 KB result (text content + structured content), median of {args.rounds}")
    for secret in (False, True):
        raw = message(secret)
        baseline = time_ms(lambda raw=raw: orjson.dumps(orjson.loads(raw)), args.rounds)

        def screened(raw=raw):
            msg = orjson.loads(raw)
            out, _ = screen_result(msg["result"], settings)
            orjson.dumps(dict(msg, result=out) if out is not None else msg)

        scanned = time_ms(screened, args.rounds)
        label = "with one AWS key" if secret else "clean"
        print(f"  {label:<18} parse+dump {baseline:7.3f} ms   screened {scanned:7.3f} ms   "
              f"added {scanned - baseline:7.3f} ms (target < 1 ms)")
        record(benchmark="result_scan", figure=f"64 KB result, {label}: added by scanning", value=scanned - baseline,
               unit="ms", baseline="parse + re-serialise only", baseline_value=baseline, target="< 1 ms",
               met=scanned - baseline < 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
