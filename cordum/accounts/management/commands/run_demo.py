"""Run the demo: the web UI at http://127.0.0.1:8000 and the demo's sidecars, until Ctrl-C."""

import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from cordum.accounts.demo import DEMO_PASSWORD, DEMO_USERS
from cordum.accounts.demo_sidecars import sidecar_command


class Command(BaseCommand):
    help = "Start the demo web UI and the demo sidecars (configs in .cordum/demo-sidecars/*.yaml)."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")

    def handle(self, *args, addr, **options):
        state = Path(settings.STATE_DIR)
        logs = state / "logs"
        logs.mkdir(exist_ok=True)
        procs: list[tuple[str, subprocess.Popen]] = []
        web = subprocess.Popen([sys.executable, "manage.py", "runserver", addr, "--noreload"],
                               cwd=settings.BASE_DIR)
        procs.append(("web", web))
        time.sleep(1.5)
        for config in sorted((state / "demo-sidecars").glob("*.yaml")):
            log = open(logs / f"sidecar-{config.stem}.log", "ab")  # noqa: SIM115 - lives as long as the process
            argv, workspace = sidecar_command(config)  # runs in the demo workspace: its `{root}`
            proc = subprocess.Popen(argv, cwd=workspace, stdin=subprocess.PIPE, stdout=log, stderr=log)
            procs.append((f"sidecar {config.stem}", proc))
        self.stdout.write(self.style.SUCCESS(f"\nCordum demo running at http://{addr}/"))
        self.stdout.write(f"Logins (password {DEMO_PASSWORD}): " + ", ".join(f"{u} ({r})" for u, _, r, _ in DEMO_USERS))
        for name, proc in procs[1:]:
            self.stdout.write(f"  {name} (pid {proc.pid}), log in {logs}")
        self.stdout.write("Ctrl-C stops everything.")
        try:
            while web.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            for _, proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for _, proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
