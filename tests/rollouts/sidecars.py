"""Real sidecar processes (`python -m cordum.sidecar run --config ...`) for the rollout integration tests."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
FS_SERVER = REPO / "node_modules" / ".bin" / "mcp-server-filesystem"


class SidecarProcess:
    """One sidecar in front of the reference filesystem MCP server, talking MCP over its stdin/stdout."""

    def __init__(self, *, name: str, control_plane: str, token: str, trusted_keys: dict, workdir: Path,
                 team: str | None = None, heartbeat_seconds: float = 0.5):
        self.name = name
        self.workdir = workdir / name
        self.project = self.workdir / "project"
        self.project.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "sidecar.yaml"
        self.config.write_text(yaml.safe_dump({
            "control_plane": control_plane, "token_env": "CORDUM_AGENT_TOKEN", "agent": name, "team": team,
            "environment": "dev", "spool": str(self.workdir / "spool.db"),
            "bundle_store": str(self.workdir / "bundle.json"), "trusted_keys": trusted_keys,
            "upload": {"interval_seconds": 0.2}, "heartbeat": {"interval_seconds": heartbeat_seconds},
            "upstreams": [{"name": "filesystem", "command": [str(FS_SERVER), str(self.project)]}],
        }))
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "CORDUM_AGENT_TOKEN": token}
        self.proc: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._next_id = 0

    def start(self) -> SidecarProcess:
        self.stderr = open(self.workdir / "stderr.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cordum.sidecar", "run", "--config", str(self.config)], cwd=self.project,
            env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def request(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        self._next_id += 1
        rid = self._next_id
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}})
        while True:
            line = self._lines.get(timeout=timeout)
            assert line is not None, f"sidecar {self.name} exited: see {self.workdir / 'stderr.log'}"
            message = json.loads(line)
            if message.get("id") == rid:
                return message

    def _send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def initialize(self) -> None:
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "rollout-test", "version": "1"}})
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call_tool(self, name: str, arguments: dict) -> dict:
        return self.request("tools/call", {"name": name, "arguments": arguments})["result"]

    def status(self) -> dict:
        out = subprocess.run([sys.executable, "-m", "cordum.sidecar", "status", "--config", str(self.config)],
                             env=self.env, capture_output=True, text=True, timeout=60, check=True)
        return json.loads(out.stdout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=15)
        except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        finally:
            self.stderr.close()
