"""Redis stops during sidecar traffic: no sidecar request fails and no evidence record is lost.

A real control plane (gunicorn) and a real Celery worker (with its beat) run as subprocesses against the
test database and a Redis server of this test's own (never the machine's shared one, which other work
uses). Sidecar-shaped traffic (evidence uploads, heartbeats, approvals opened, waited on and cancelled,
bundle long-polls) runs throughout; Redis is stopped for CORDUM_FAULT_REDIS_OUTAGE_SECONDS (default 6; the
issue's acceptance run uses 30) and started again, empty, as after a crash.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from django.db import connection

from cordum.accounts.choices import Role
from cordum.approvals.models import ApprovalRequest
from cordum.decisions.models import EvidenceRecord, IngestBatch
from tests.decisions.conftest import make_decision, make_outcome
from tests.factories import MembershipFactory, UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]

OUTAGE_SECONDS = float(os.environ.get("CORDUM_FAULT_REDIS_OUTAGE_SECONDS", "6"))
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    """A redis-server on a free port, without persistence: a restart comes back empty."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.tmp, self.proc = _free_port(), tmp, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # as a crash: nothing is flushed
            self.proc.wait(timeout=10)
            self.proc = None


def _wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


def _test_database_url() -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


@pytest.fixture
def stack(tmp_path):
    """Own Redis, a gunicorn control plane and a Celery worker + beat, all pointed at the test database."""
    redis = OwnRedis(tmp_path)
    redis.start()
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "REDIS_URL": redis.url,
           "CELERY_BROKER_URL": redis.url, "CORDUM_INGEST_SWEEP_SECONDS": "2", "CORDUM_LONG_POLL_MAX_SECONDS": "60"}
    bin_dir = Path(sys.executable).parent
    logs = [open(tmp_path / name, "wb") for name in ("web.log", "worker.log")]  # noqa: SIM115
    web = subprocess.Popen([str(bin_dir / "gunicorn"), "cordum.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1",
                            "-k", "gthread", "--threads", "16", "--timeout", "120", "--graceful-timeout", "5"],
                           cwd=ROOT, env=env, stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True)
    worker = subprocess.Popen([str(bin_dir / "celery"), "-A", "cordum", "worker", "-B", "-P", "solo",
                               "--without-gossip", "--without-mingle", "-l", "WARNING",
                               "-s", str(tmp_path / "beat-schedule")],
                              cwd=ROOT, env=env, stdout=logs[1], stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_port(port)
        yield {"url": f"http://127.0.0.1:{port}", "redis": redis, "logs": tmp_path}
    finally:
        for proc in (web, worker):
            proc.terminate()
        for proc in (web, worker):  # each runs in its own process group: its children go with it
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        redis.stop()
        for handle in logs:
            handle.close()


class Traffic:
    """One sidecar's requests in a loop; every answer other than 2xx/304 is a failure."""

    def __init__(self, url: str, token: str, etag: str | None) -> None:
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self.etag, self.sent, self.failures, self.requests = etag, [], [], 0
        self.stop = threading.Event()

    def _check(self, response: httpx.Response, what: str) -> httpx.Response:
        self.requests += 1
        if response.status_code >= 400:
            self.failures.append(f"{what}: {response.status_code} {response.text[:200]}")
        return response

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                self._one_round(n)
            except httpx.HTTPError as exc:  # a refused or dropped connection fails the sidecar's request too
                self.failures.append(f"round {n}: {exc!r}")

    def _one_round(self, n: int) -> None:
        decision = make_decision(n=n)
        records = [decision, make_outcome(decision)]
        if self._check(self.client.post("/api/v1/decisions", json={"records": records}), "upload"
                       ).status_code == 202:
            self.sent += [decision["decision_id"], f"{decision['decision_id']}:executed"]
        self._check(self.client.post("/api/v1/heartbeat", json={"sidecar_id": "sc-fault", "spool_depth": 0}),
                    "heartbeat")
        opened = self._check(self.client.post("/api/v1/approvals", json={
            "decision_id": str(uuid.uuid4()), "tool": "git_push", "args_digest": "sha256:" + "ab" * 32,
            "timeout_seconds": 600}), "approval open")
        if opened.status_code < 300:
            approval_id = opened.json()["id"]
            self._check(self.client.get(f"/api/v1/approvals/{approval_id}", params={"wait": 0.3}),
                        "approval wait")
            self._check(self.client.post(f"/api/v1/approvals/{approval_id}/cancel", json={}), "approval cancel")
        headers = {"If-None-Match": self.etag} if self.etag else {}
        self._check(self.client.get("/api/v1/bundle", params={"wait": 1}, headers=headers), "bundle poll")


def _published_bundle(org) -> str:
    """A live, signed bundle, so bundle long-polls have something to compare their ETag with."""
    from cordum.policies import services
    from cordum.policies.models import PolicyRepository
    from tests.rollouts.conftest import publish_version

    services.signing_key_create(organization=org)
    repository = PolicyRepository.objects.create(organization=org, name="policies", url="/nonexistent",
                                                 branch="main")
    publish_version(repository, "version: v1\ndefaults: {decision: deny}\nrules: []\n", "v1.0.0")


def test_a_redis_outage_fails_no_sidecar_request_and_loses_no_evidence(org_setup, stack):
    _published_bundle(org_setup["org"])
    url, redis = stack["url"], stack["redis"]
    agent = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {org_setup['pay_token']}"}, timeout=30)
    etag = agent.get("/api/v1/bundle").headers["ETag"]
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "database": "ok", "redis": "ok"}

    traffic = [Traffic(url, org_setup["pay_token"], etag), Traffic(url, org_setup["web_token"], None)]
    threads = [threading.Thread(target=t.run, daemon=True) for t in traffic]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        redis.stop()
        try:
            _while_redis_is_down(url, agent, org_setup)
        finally:
            redis.start()
        time.sleep(2)
    finally:
        for t in traffic:
            t.stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert [f for t in traffic for f in t.failures] == []
    assert all(t.requests > 10 for t in traffic)
    sent = {record_id for t in traffic for record_id in t.sent}
    deadline = time.monotonic() + 120
    stored: set[str] = set()
    while time.monotonic() < deadline and not sent <= stored:
        time.sleep(0.5)
        stored = {r.record_id for r in EvidenceRecord.objects.filter(agent_name__in=["claude-code-pay", "cursor-web"])}
    # every record a sidecar got a 202 for is chained (approval outcomes the server appends come on top)
    assert sent - stored == set(), (len(sent - stored), (stack["logs"] / "worker.log").read_text()[-3000:])
    assert not IngestBatch.objects.exists()
    assert httpx.get(f"{url}/healthz").json()["redis"] == "ok"


def _while_redis_is_down(url: str, agent: httpx.Client, org_setup: dict) -> None:
    from cordum.approvals import services as approvals

    down = httpx.get(f"{url}/healthz")
    assert (down.status_code, down.json()) == (200, {"status": "degraded", "database": "ok", "redis": "down"})

    # A long-poll on an approval wakes by polling the database when its decision lands.
    opened = agent.post("/api/v1/approvals", json={"decision_id": str(uuid.uuid4()), "tool": "git_push",
                                                   "args_digest": "sha256:" + "cd" * 32})
    assert opened.status_code == 201, opened.text
    waited: dict = {}
    waiter = threading.Thread(target=lambda: waited.update(agent.get(
        f"/api/v1/approvals/{opened.json()['id']}", params={"wait": 55}).json()), daemon=True)
    waiter.start()
    time.sleep(1)
    reviewer = MembershipFactory(organization=org_setup["org"], user=UserFactory(), role=Role.REVIEWER)
    approvals.approval_decide(approval=ApprovalRequest.objects.get(pk=opened.json()["id"]),
                              membership=reviewer, decision="approve")
    waiter.join(timeout=60)
    assert waited.get("state") == "approved", waited
    time.sleep(max(0.0, OUTAGE_SECONDS - 1))
