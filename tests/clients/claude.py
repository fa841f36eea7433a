"""Runs the pinned `@anthropic-ai/claude-code` (node_modules/.bin/claude) headless in a temporary HOME and
project, against a scripted model (tests/clients/anthropic_api.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLAUDE = REPO / "node_modules" / ".bin" / "claude"


def claude_env(home: Path, model_url: str) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)  # cordum-sidecar for the hooks and the wrapped MCP servers
    return {
        "HOME": str(home), "PATH": f"{venv_bin}:{REPO / 'node_modules' / '.bin'}:/usr/local/bin:/usr/bin:/bin",
        "ANTHROPIC_BASE_URL": model_url, "ANTHROPIC_API_KEY": "sk-ant-scripted-test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1", "PYTHONPATH": str(REPO), "CORDUM_LOG_LEVEL": "WARNING",
    }


def run_claude(project: Path, home: Path, model_url: str, prompt: str, *extra: str,
               timeout: float = 240) -> list[dict]:
    """`claude -p PROMPT --output-format stream-json --verbose` in `project`; the events it printed."""
    done = subprocess.run([str(CLAUDE), "-p", prompt, "--output-format", "stream-json", "--verbose", *extra],
                          cwd=project, env=claude_env(home, model_url), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if not events:
        raise RuntimeError(f"claude printed no events (exit {done.returncode}): {done.stderr[-2000:]}")
    return events


def claude_mcp_list(project: Path, home: Path, model_url: str) -> str:
    done = subprocess.run([str(CLAUDE), "mcp", "list"], cwd=project, env=claude_env(home, model_url),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    return done.stdout + done.stderr


def init_tools(events: list[dict]) -> list[str]:
    return next(e["tools"] for e in events if e.get("type") == "system" and e.get("subtype") == "init")


