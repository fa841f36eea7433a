"""Load the demo organisation and everything the other apps add to it (idempotent)."""

import importlib
import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

# Each app may offer `cordum.<app>.demo.load(ctx)`; they run in this order and share ctx.
DEMO_STEPS = ["accounts", "policies", "decisions", "approvals", "simulation", "rollouts"]


class Command(BaseCommand):
    help = "Create (or refresh) the demo organisation: teams, users per role, agents, policy repo, recorded calls."

    def handle(self, *args, **options):
        ctx: dict = {"stdout": self.stdout, "state_dir": Path(settings.STATE_DIR)}
        for app in DEMO_STEPS:
            try:
                module = importlib.import_module(f"cordum.{app}.demo")
            except ModuleNotFoundError as exc:
                if exc.name != f"cordum.{app}.demo":
                    raise
                continue
            self.stdout.write(f"demo: {app} …")
            module.load(ctx)
        from cordum.accounts.demo_sidecars import DEMO_SIDECARS, write_configs

        configs = write_configs(ctx)
        # Tokens for the demo's sidecars: local file readable only by this user.
        tokens_file = Path(settings.STATE_DIR) / "demo-agent-tokens.json"
        tokens_file.write_text(json.dumps(ctx.get("agent_tokens", {}), indent=2))
        tokens_file.chmod(0o600)
        from cordum.accounts.demo import DEMO_PASSWORD, DEMO_USERS

        self.stdout.write(self.style.SUCCESS("\nDemo organisation 'Acme Corp' is ready. Logins (password for all: "
                                             f"{DEMO_PASSWORD}):"))
        for username, _email, role, teams in DEMO_USERS:
            self.stdout.write(f"  {username:<8} {role:<14} {', '.join(teams)}")
        self.stdout.write(f"Agent tokens for the demo sidecars: {tokens_file}")
        for (agent, port), config in zip(DEMO_SIDECARS, configs, strict=True):
            self.stdout.write(f"Sidecar for {agent}: http://127.0.0.1:{port}/mcp ({config})")
