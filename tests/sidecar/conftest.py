"""Fixtures for the sidecar tests: real upstream MCP servers, the sidecar as a real process, and a small real
HTTP control plane (for the uploader/approval client behaviour; the Django control plane is used where the
test is about the product's own endpoints)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
POLICY = DATA / "safety.yaml"
PYTHON = sys.executable
FS_SERVER = REPO / "node_modules" / ".bin" / "mcp-server-filesystem"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def fs_server_bin() -> str:
    if not FS_SERVER.exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REPO, check=True)
    return str(FS_SERVER)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory (the sidecar's root) with a file, and a sibling directory outside it."""
    proj = tmp_path / "project"
    proj.mkdir()
    (proj / "README.md").write_text("# hello from the project\n")
    (proj / ".env").write_text("SECRET=1\n")
    (tmp_path / "outside").mkdir()
    return proj


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True, env=env)
    (repo / "a.txt").write_text("one\n")
    subprocess.run(["git", "add", "a.txt"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", "first commit"], cwd=repo, check=True, env=env)
    return repo


def sidecar_env(**extra: str) -> dict[str, str]:
    env = {"PYTHONPATH": str(REPO), "CORDUM_LOG_LEVEL": "INFO"}
    env.update(extra)
    return env


def sidecar_params(args: list[str], *, cwd: Path, env: dict[str, str] | None = None):
    from mcp.client.stdio import StdioServerParameters

    return StdioServerParameters(command=PYTHON, args=["-m", "cordum.sidecar", *args], cwd=str(cwd),
                                 env=sidecar_env(**(env or {})))


@asynccontextmanager
async def mcp_session(params, errlog=None):
    """An initialized mcp SDK ClientSession over stdio to `params` (the sidecar or an upstream directly)."""
    from mcp import ClientSession
    from mcp.client.stdio import stdio_client

    log = errlog or open(os.devnull, "w")  # noqa: SIM115
    try:
        async with stdio_client(params, errlog=log) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session
    finally:
        if errlog is None:
            log.close()


def fs_direct_params(fs_bin: str, *dirs: Path, cwd: Path):
    from mcp.client.stdio import StdioServerParameters

    return StdioServerParameters(command=fs_bin, args=[str(d) for d in dirs], cwd=str(cwd))


def text_of(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


# --- a small real control plane --------------------------------------------------------------------

class ControlPlane:
    """Thread-based HTTP server speaking the sidecar-facing contract, with knobs for tests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posted: list[str] = []          # every record id ever posted (duplicates included)
        self.stored: dict[str, dict] = {}    # idempotent store by record id
        self.heartbeats: list[dict] = []
        self.drifts: list[dict] = []  # tool drift reports (POST /api/v1/tool-drifts)
        self.drifts_status = 202
        self.drifts_changed = threading.Condition(self.lock)
        self.decisions_status = 202
        self.ack_only: set[str] | None = None  # acknowledge only these ids (None: all)
        self.bundle: dict | None = None
        self.approvals: dict[str, dict] = {}
        self.approval_requests: list[dict] = []
        self.approval_changed = threading.Condition(self.lock)
        self.consumed: list[dict] = []
        self.cancelled: list[str] = []
        self.auto_decide: tuple[str, str] | None = None  # (state, reviewer) applied to new approvals
        self.records_event = threading.Event()
        self.stopping = threading.Event()
        self.bundle_changed = threading.Condition()
        self.etags_seen: list[str | None] = []
        self._published_at = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> ControlPlane:
        self.thread.start()
        return self

    def etag(self) -> str | None:
        if self.bundle is None:
            return None
        manifest = self.bundle["manifest"]
        return f'"{manifest["content_sha256"]}-{manifest["sequence"]}"'

    def publish(self, bundle: dict) -> None:
        with self.bundle_changed:
            self.bundle = bundle
            self._published_at = len(self.etags_seen)
            self.bundle_changed.notify_all()

    def wait_for_sidecar_holding(self, bundle: dict, timeout: float = 30.0) -> None:
        """Block until a sidecar long-polls with this bundle's ETag after it was published, i.e. it has fetched
        it and either applied it or refused it."""
        manifest = bundle["manifest"]
        etag = f'"{manifest["content_sha256"]}-{manifest["sequence"]}"'
        with self.bundle_changed:
            ok = self.bundle_changed.wait_for(lambda: etag in self.etags_seen[self._published_at:], timeout)
            assert ok, "the sidecar never fetched the bundle"

    def stop(self) -> None:
        self.stopping.set()
        with self.bundle_changed:
            self.bundle_changed.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def decide(self, approval_id: str, state: str, reviewer: str = "alice@example.com", comment: str = "") -> None:
        with self.approval_changed:
            self.approvals[approval_id].update(state=state, reviewer=reviewer, comment=comment)
            self.approval_changed.notify_all()

    def wait_for_cancel(self, timeout: float = 20.0) -> str:
        with self.approval_changed:
            assert self.approval_changed.wait_for(lambda: self.cancelled, timeout=timeout), "no cancel arrived"
            return self.cancelled[0]

    def wait_for_drifts(self, count: int = 1, timeout: float = 20.0) -> list[dict]:
        with self.drifts_changed:
            assert self.drifts_changed.wait_for(lambda: len(self.drifts) >= count, timeout=timeout), "no drift report"
            return list(self.drifts)

    def wait_for_approval_request(self, timeout: float = 20.0) -> dict:
        with self.approval_changed:
            ok = self.approval_changed.wait_for(lambda: self.approval_requests, timeout=timeout)
            assert ok, "the sidecar never asked for an approval"
            return self.approval_requests[0]

    def _handler(self):
        cp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _json(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/api/v1/bundle":
                    if cp.bundle is None:
                        return self._json(404, {"message": "no valid policy has been published for this organisation"})
                    seen = self.headers.get("If-None-Match")
                    with cp.bundle_changed:
                        cp.etags_seen.append(seen)
                        cp.bundle_changed.notify_all()
                        if seen == cp.etag():  # long-poll: hold until a newer bundle is published
                            wait = float(parse_qs(url.query).get("wait", ["0"])[0])
                            cp.bundle_changed.wait_for(lambda: seen != cp.etag() or cp.stopping.is_set(), wait)
                        if seen == cp.etag():
                            self.send_response(304)
                            self.end_headers()
                            return None
                        bundle = cp.bundle
                    return self._json(200, bundle)
                if url.path.startswith("/api/v1/approvals/"):
                    approval_id = url.path.rsplit("/", 1)[1]
                    wait = float(parse_qs(url.query).get("wait", ["0"])[0])
                    with cp.approval_changed:
                        cp.approval_changed.wait_for(lambda: cp.approvals[approval_id]["state"] != "pending",
                                                     timeout=wait)
                        return self._json(200, dict(cp.approvals[approval_id]))
                return self._json(404, {"message": "not found"})

            def do_POST(self):
                url = urlparse(self.path)
                body = self._body()
                if url.path == "/api/v1/decisions":
                    if cp.decisions_status != 202:
                        return self._json(cp.decisions_status, {"message": "control plane trouble"})
                    accepted = []
                    with cp.lock:
                        for rec in body["records"]:
                            rid = rec["decision_id"] if rec["record_type"] == "decision" else \
                                f"{rec['decision_id']}:{rec['outcome']}"
                            if cp.ack_only is not None and rid not in cp.ack_only:
                                continue
                            cp.posted.append(rid)
                            cp.stored.setdefault(rid, rec)
                            accepted.append(rid)
                    cp.records_event.set()
                    return self._json(202, {"accepted": accepted})
                if url.path == "/api/v1/tool-drifts":
                    if cp.drifts_status != 202:
                        return self._json(cp.drifts_status, {"message": "control plane trouble"})
                    with cp.drifts_changed:
                        cp.drifts.extend(dict(d, sidecar_id=body.get("sidecar_id")) for d in body["drifts"])
                        cp.drifts_changed.notify_all()
                    return self._json(202, {"accepted": len(body["drifts"])})
                if url.path == "/api/v1/heartbeat":
                    with cp.lock:
                        cp.heartbeats.append(body)
                    return self._json(200, {"ok": True})
                if url.path == "/api/v1/approvals":
                    with cp.approval_changed:
                        approval_id = f"ap{len(cp.approvals) + 1}"
                        state, reviewer = cp.auto_decide or ("pending", None)
                        cp.approvals[approval_id] = {"id": approval_id, "state": state, "reviewer": reviewer,
                                                     "comment": "", "decided_at": None, "used": False}
                        cp.approval_requests.append(dict(body, id=approval_id))
                        cp.approval_changed.notify_all()
                    return self._json(201, {"id": approval_id, "state": "pending", "expires_at": "2099-01-01T00:00:00Z"})
                if url.path.endswith("/cancel"):
                    approval_id = url.path.split("/")[-2]
                    with cp.approval_changed:
                        cp.approvals[approval_id]["state"] = "cancelled"
                        cp.cancelled.append(approval_id)
                        cp.approval_changed.notify_all()
                    return self._json(200, dict(cp.approvals[approval_id]))
                if url.path.endswith("/consume"):
                    approval_id = url.path.split("/")[-2]
                    with cp.lock:
                        ap = cp.approvals[approval_id]
                        if ap["state"] != "approved":
                            return self._json(400, {"message": "not approved"})
                        if ap["used"]:
                            return self._json(409, {"message": "already used"})
                        ap["used"] = True
                        cp.consumed.append(dict(body, id=approval_id))
                    return self._json(200, {"ok": True})
                return self._json(404, {"message": "not found"})

        return Handler


@pytest.fixture
def control_plane():
    cp = ControlPlane().start()
    yield cp
    cp.stop()


def write_config(path: Path, **values) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


@pytest.fixture
def stderr_log(tmp_path: Path):
    """A file the sidecar's stderr (JSON logs) goes to, for tests that need its pid or its log lines."""
    path = tmp_path / "sidecar.log"
    with open(path, "w") as handle:
        yield handle, path


def sidecar_pids(log_path: Path) -> list[int]:
    pids = []
    for line in log_path.read_text().splitlines():
        if line.startswith("{") and '"sidecar ready"' in line:
            pids.append(json.loads(line)["pid"])
    return pids


__all__ = ["POLICY", "PYTHON", "REPO", "shutil"]
