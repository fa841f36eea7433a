"""A control plane scaled out on the engines it already uses: two gunicorn servers (as on two hosts) and two
Celery worker processes on one PostgreSQL database and one Redis, each a real process.

The ports are bound by the servers themselves (`-b 127.0.0.1:0`) and read from their log, never guessed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


class Cluster:
    def __init__(self, *, database_url: str, redis_url: str, name: str, workdir: Path):
        parsed = urlparse(database_url)
        self.db_name = f"{(parsed.path.lstrip('/') or 'postgres')}_{name}"
        self.admin_url = urlunparse(parsed._replace(path="/postgres"))
        self.env = {**os.environ, "DATABASE_URL": urlunparse(parsed._replace(path="/" + self.db_name)),
                    "REDIS_URL": redis_url, "CORDUM_DEBUG": "0", "CORDUM_LOG_LEVEL": "WARNING",
                    "CORDUM_LONG_POLL_MAX_SECONDS": "30", "CORDUM_STATE_DIR": str(workdir),
                    "PYTHONPATH": str(ROOT)}
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.web_urls: list[str] = []

    def __enter__(self) -> Cluster:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        subprocess.run([PY, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env, check=True)
        import redis

        redis.Redis.from_url(self.env["REDIS_URL"]).flushdb()  # this test's own Redis db: no stale tasks
        try:
            for i in range(2):
                self.web_urls.append(self._start_web(i))
            for i in range(2):
                self._start_worker(i)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start_web(self, index: int) -> str:
        log = self.workdir / f"web{index}.log"
        proc = subprocess.Popen(
            [PY, "-m", "gunicorn", "cordum.wsgi", "-b", "127.0.0.1:0", "--workers", "2", "--threads", "8",
             "--timeout", "90", "--error-logfile", str(log)], cwd=ROOT, env=self.env)
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = LISTENING.search(log.read_text()) if log.exists() else None
            if found:
                return f"http://127.0.0.1:{found.group(1)}"
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn {index} exited: {log.read_text()}")
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn {index} did not start: {log.read_text() if log.exists() else ''}")

    def _start_worker(self, index: int) -> None:
        log = open(self.workdir / f"worker{index}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs.append(subprocess.Popen(
            [PY, "-m", "celery", "-A", "cordum", "worker", "--pool", "solo", "-n", f"scale{index}@%h",
             "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=log, stderr=log))

    def django(self, code: str) -> dict:
        """Runs `code` in a fresh process set up against the cluster's database; returns the JSON it prints."""
        prelude = "import django, json, sys; django.setup()\n"
        done = subprocess.run([PY, "-c", prelude + code], cwd=ROOT, capture_output=True, text=True,
                              env={**self.env, "DJANGO_SETTINGS_MODULE": "cordum.settings"}, check=False)
        if done.returncode:
            raise RuntimeError(done.stderr)
        return json.loads(done.stdout.strip().splitlines()[-1])

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
