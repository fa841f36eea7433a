"""Sidecar overhead: tools/call round trip through `cordum-sidecar` vs directly to the same MCP server.

Upstream: the real @modelcontextprotocol/server-filesystem (node), tool `read_text_file` on a small file.
Both paths are measured in the same run, interleaved call by call, with a minimal newline-JSON client (so the
client's own cost is the same on both sides and small). The sidecar path includes the policy decision, the
SQLite spool write (WAL, committed before forwarding) and the outcome update. Prints p50/p99 for each path,
the p50/p99 added, and the sidecar process's RSS.

    .venv/bin/python bench/sidecar_overhead.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FS = REPO / "node_modules" / ".bin" / "mcp-server-filesystem"
POLICY = REPO / "tests" / "sidecar" / "data" / "safety.yaml"


class RawClient:
    def __init__(self, argv: list[str], cwd: str, env: dict[str, str] | None = None):
        self.argv, self.cwd, self.env = argv, cwd, env
        self.next_id = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, limit=16 * 1024 * 1024)
        await self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                          "clientInfo": {"name": "bench", "version": "0"}})
        self.notify("notifications/initialized")

    def notify(self, method: str, params: dict | None = None) -> None:
        msg = {"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})}
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")

    async def request(self, method: str, params: dict) -> dict:
        self.next_id += 1
        rid = self.next_id
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()
                              + b"\n")
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.argv[0]} exited")
            msg = json.loads(line)
            if msg.get("id") == rid and "method" not in msg:
                return msg

    async def close(self) -> None:
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main(calls: int, warmup: int) -> None:
    if not FS.exists():
        sys.exit("node_modules/.bin/mcp-server-filesystem is missing: run `npm install` (make node) first")
    with tempfile.TemporaryDirectory() as tmp:
        proj = Path(tmp) / "project"
        proj.mkdir()
        target = proj / "README.md"
        target.write_text("# hello\n" * 20)
        env = {**os.environ, "PYTHONPATH": str(REPO), "CORDUM_LOG_LEVEL": "WARNING"}
        direct = RawClient([str(FS), str(proj)], cwd=str(proj))
        sidecar = RawClient([sys.executable, "-m", "cordum.sidecar", "run", "--bundle", str(POLICY), "--spool",
                             str(Path(tmp) / "spool.db"), "--", str(FS), str(proj)], cwd=str(proj), env=env)
        await direct.start()
        await sidecar.start()
        args = {"name": "read_text_file", "arguments": {"path": str(target)}}
        for _ in range(warmup):
            await direct.request("tools/call", args)
            await sidecar.request("tools/call", args)
        t_direct, t_sidecar = [], []
        for _ in range(calls):
            t0 = time.perf_counter()
            r1 = await direct.request("tools/call", args)
            t1 = time.perf_counter()
            r2 = await sidecar.request("tools/call", args)
            t2 = time.perf_counter()
            t_direct.append((t1 - t0) * 1000)
            t_sidecar.append((t2 - t1) * 1000)
        assert r1["result"] == r2["result"], "the sidecar changed the result"
        rss = rss_mb(sidecar.proc.pid)
        await direct.close()
        await sidecar.close()
        from cordum.sidecar.spool import Spool

        spooled = Spool(Path(tmp) / "spool.db").depth()

    d50, d99 = statistics.median(t_direct), pct(t_direct, 0.99)
    s50, s99 = statistics.median(t_sidecar), pct(t_sidecar, 0.99)
    print(f"sidecar overhead: server-filesystem read_text_file, {calls} calls each, interleaved, same run")
    print(f"  {'path':<28}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"  {'direct (baseline)':<28}{d50:>10.3f}{d99:>10.3f}")
    print(f"  {'through cordum-sidecar':<28}{s50:>10.3f}{s99:>10.3f}")
    print(f"  {'added by the sidecar':<28}{s50 - d50:>10.3f}{s99 - d99:>10.3f}   (target: <= 0.300 ms p50)")
    print(f"  sidecar RSS: {rss:.1f} MB (target <= 60 MB); evidence records spooled: {spooled}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    ns = ap.parse_args()
    asyncio.run(main(ns.calls, ns.warmup))
