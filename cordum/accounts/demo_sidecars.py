"""Sidecar configs for `make demo`: two agents fronting the real git and filesystem MCP servers.

`run_demo` starts one `cordum-sidecar` per config in .cordum/demo-sidecars/; each listens on streamable
HTTP so an MCP client (Claude Code: `{"type": "http", "url": ...}` in .mcp.json) can connect to it.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from django.conf import settings

DEMO_SIDECARS = [("claude-code-mo", 8766), ("cursor-web", 8767)]
WORKSPACE_FILES = {
    "README.md": "# demo-app\n\nA tiny project the demo agents work on.\n",
    "src/auth/login.ts": "export function login(user: string, password: string) {\n  return user.length > 0;\n}\n",
    ".env": "STRIPE_SECRET_KEY=sk_test_demo_not_a_real_key\n",
}


def _workspace(state_dir: Path) -> Path:
    workspace = state_dir / "demo-workspace"
    if not (workspace / ".git").exists():
        for rel, text in WORKSPACE_FILES.items():
            path = workspace / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git = ["git", "-C", str(workspace), "-c", "user.name=Demo", "-c", "user.email=demo@example.com"]
        subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
        subprocess.run([*git, "add", "README.md", "src"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "Initial commit"], check=True)
    return workspace


def sidecar_command(config: Path) -> tuple[list[str], Path]:
    """How `run_demo` starts the sidecar of `config` (in .cordum/demo-sidecars/): argv and working directory.

    A sidecar decides against its working directory as the agent's root (`{root}` in the policy, e.g. the
    template's blast-radius rule `deny-write-outside-repo`), so it runs in the demo workspace its upstreams serve.
    """
    workspace = _workspace(config.resolve().parent.parent)
    return [sys.executable, "-m", "cordum.sidecar", "run", "--config", str(config)], workspace


def write_configs(ctx: dict) -> list[Path]:
    state_dir = Path(ctx["state_dir"])
    workspace = _workspace(state_dir)
    config_dir = state_dir / "demo-sidecars"
    token_dir = state_dir / "demo-tokens"
    config_dir.mkdir(exist_ok=True)
    token_dir.mkdir(mode=0o700, exist_ok=True)
    filesystem = shutil.which("mcp-server-filesystem", path=str(Path(settings.BASE_DIR) / "node_modules" / ".bin"))
    written = []
    for agent, port in DEMO_SIDECARS:
        token_file = token_dir / f"{agent}.token"
        token_file.write_text(ctx["agent_tokens"][agent])
        token_file.chmod(0o600)
        upstreams = [{"name": "git", "command": [sys.executable, "-m", "mcp_server_git", "--repository", str(workspace)]}]
        if filesystem:
            upstreams.append({"name": "filesystem", "command": [filesystem, str(workspace)]})
        config = {
            "control_plane": "http://127.0.0.1:8000",
            "token_file": str(token_file),
            "agent": agent,
            "environment": "dev",
            "spool": str(config_dir / f"{agent}.spool.db"),
            # Its own last good bundle: the default (bundle.json next to the spool) would be shared by both demo
            # sidecars, so one could restart from the other's bundle (another rollout stage's version).
            "bundle_store": str(config_dir / f"{agent}.bundle.json"),
            "listen": f"http://127.0.0.1:{port}/mcp",
            "trusted_keys": dict(ctx.get("trusted_keys") or {}),
            "upstreams": upstreams,
        }
        path = config_dir / f"{agent}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        written.append(path)
    return written
