"""Run the demo: the web UI at http://127.0.0.1:8000 and the demo's sidecars, until Ctrl-C."""

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from cordum.accounts.demo import DEMO_PASSWORD, DEMO_USERS
from cordum.accounts.demo_sidecars import sidecar_command

logger = logging.getLogger("cordum.demo")


class EagerBeat:
    """Celery beat's schedule run in this process, for the demo's eager Celery (no broker, no beat): guardrail
    checks, approval expiry, repository polls happen as they would in production."""

    def __init__(self, schedule: dict, *, now=time.monotonic):
        from cordum.celery import app

        app.loader.import_default_modules()  # the apps' tasks modules, as a worker imports them at start
        self.now = now
        self.entries = [(name, entry["task"], entry["schedule"].total_seconds()) for name, entry in schedule.items()]
        self.due = {name: now() + min(interval, 5.0) for name, _task, interval in self.entries}

    def tick(self) -> list[str]:
        """Runs every task that is due; returns their names. A failing task is logged and tried next time."""
        from cordum.celery import app

        ran = []
        for name, task, interval in self.entries:
            if self.now() < self.due[name]:
                continue
            self.due[name] = self.now() + interval
            try:
                app.tasks[task].apply(throw=True)
                ran.append(name)
            except Exception:
                logger.exception("demo beat: %s failed", name)
        return ran


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
        self.stdout.write("Ctrl-C stops everything. Periodic tasks (guardrail checks, approval expiry, repository "
                          "polls) run here on Celery beat's schedule.")
        beat = EagerBeat(settings.CELERY_BEAT_SCHEDULE)
        try:
            while web.poll() is None:
                time.sleep(1)
                beat.tick()
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
