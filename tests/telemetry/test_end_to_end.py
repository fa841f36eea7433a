"""Telemetry end to end, all real: an MCP client calls through a real `cordum-sidecar` (in front of the real
filesystem server) that enforces the bundle a live control plane published; a write is held, a reviewer approves
it through the API. A real OTLP receiver gets the sidecar's spans and metrics and the control plane's approval and
ingestion metrics (and its approval span, joined to the sidecar's by decision id); Prometheus /metrics is scraped
from the sidecar (while the call is held, and after) and from the control plane."""

import asyncio
import os
import socket
import subprocess
import sys
import urllib.request
from contextlib import asynccontextmanager
from pathlib import Path

import git
import pytest
import yaml
from django.db import connection
from rest_framework.test import APIClient

from cordum.accounts.choices import Role
from cordum.approvals import services as approval_services
from cordum.approvals.models import ApprovalRequest
from cordum.common import telemetry
from cordum.common.notify import wait_for
from cordum.decisions.models import EvidenceRecord
from cordum.policies import services as policy_services
from cordum.policies.models import PolicyBundle, SigningKey
from cordum.sidecar.bundles import BundleStore
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory, UserFactory, agent_with_token
from tests.telemetry.otlp_receiver import OtlpReceiver

REPO = Path(__file__).resolve().parents[2]
FS_SERVER = REPO / "node_modules" / ".bin" / "mcp-server-filesystem"
POLICY = """version: v1
defaults:
  decision: deny
  approval: {timeout: 15m, on_timeout: deny, reviewers: ["role:reviewer"], allow_self_approval: false}
tools:
  - {server: filesystem, tool: ["read_*", "list_*"], topic: job.mcp-bridge.read.file}
  - {server: filesystem, tool: [write_file, edit_file], topic: job.mcp-bridge.write.file, target: "{path}", write: true}
rules:
  - {id: allow-code-read, match: {topics: ["job.mcp-bridge.read.*"]}, decision: allow, reason: "File reads are safe"}
  - id: approve-file-writes
    match: {topics: ["job.mcp-bridge.write.*"]}
    decision: require_approval
    reason: "File writes pause for developer review"
"""

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

METRICS_TOKEN = "scrape-me-0123456789"


@pytest.fixture
def world(tmp_path, settings, live_server, celery_eager):
    """An org whose policy repository (real git) is synced and published as a signed bundle, a reviewer, an
    agent with a token, a project, and a sidecar.yaml pointing at the live control plane."""
    if not FS_SERVER.exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REPO, check=True)
    settings.CORDUM_GIT_CACHE_DIR = tmp_path / "git-cache"
    org = OrganizationFactory(slug="acme-telemetry")
    payments = TeamFactory(organization=org, slug="payments", name="Payments")
    owner = MembershipFactory(organization=org, role=Role.MEMBER, user=UserFactory(username="mo"))
    alice = MembershipFactory(organization=org, role=Role.REVIEWER, user=UserFactory(username="alice",
                                                                                     email="alice@example.com"))
    _agent, issued = agent_with_token(organization=org, name="claude-code-mo", team=payments, owner=owner.user)
    repo = git.Repo.init(tmp_path / "policies", initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "Pat Author")
        config.set_value("user", "email", "pat@example.com")
        config.set_value("commit", "gpgsign", "false")
    (tmp_path / "policies" / "safety.yaml").write_text(POLICY)
    repo.index.add(["safety.yaml"])
    repo.index.commit("File writes need approval")
    repo.create_tag("v1.0.0")
    policy_services.signing_key_create(organization=org)
    repository, _secret = policy_services.repository_create(organization=org, actor=None, name="policies",
                                                            url=str(tmp_path / "policies"))
    assert policy_services.sync_repository(repository=repository).published_bundle
    bundle = PolicyBundle.objects.filter(organization=org).order_by("-sequence").first()
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.py").write_text("DEBUG = True\n")
    BundleStore(tmp_path / "bundle.json").save(bundle.bundle)
    config = {
        "control_plane": live_server.url, "token_env": "CORDUM_AGENT_TOKEN", "agent": "claude-code-mo",
        "team": "payments", "environment": "dev", "spool": str(tmp_path / "spool.db"),
        "bundle_store": str(tmp_path / "bundle.json"),
        "trusted_keys": {k.key_id: k.public_key for k in SigningKey.objects.filter(organization=org)},
        "approvals": {"poll_wait_seconds": 10, "progress_interval_seconds": 1},
        "upload": {"interval_seconds": 0.2}, "heartbeat": {"interval_seconds": 3600},
        "upstreams": [{"name": "filesystem", "command": [str(FS_SERVER), str(project)]}],
    }
    (tmp_path / "sidecar.yaml").write_text(yaml.safe_dump(config))
    return {"org": org, "alice": alice, "token": issued.plaintext, "project": project,
            "config": tmp_path / "sidecar.yaml", "bundle": bundle, "log": tmp_path / "sidecar.log"}


def in_thread(fn):
    """Run DB work off the event loop, on its own connection (closed afterwards)."""

    def run():
        try:
            return fn()
        finally:
            connection.close()

    return asyncio.to_thread(run)


def wait_for_request(org) -> ApprovalRequest:
    found = wait_for(approval_services.approvals_org_channel(org.pk), 60,
                     lambda: ApprovalRequest.objects.filter(organization=org).first())
    assert found is not None, "the sidecar never opened an approval request"
    return found


def wait_for_executed(org, decision_id) -> None:
    def check():
        return EvidenceRecord.objects.filter(organization=org, decision_id=decision_id, outcome="executed").exists()

    assert wait_for(f"evidence:{org.pk}", 60, check), "the executed outcome never reached the trail"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str, token: str | None = None) -> dict[str, float]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    text = urllib.request.urlopen(request, timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@asynccontextmanager
async def sidecar_session(w, env):
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "cordum.sidecar", "run", "--config", str(w["config"])],
        cwd=str(w["project"]), env={"PYTHONPATH": str(REPO), "CORDUM_AGENT_TOKEN": w["token"],
                                    "PATH": os.environ.get("PATH", ""), **env})
    with open(w["log"], "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def test_a_held_and_approved_call_is_seen_in_otlp_and_prometheus_from_sidecar_and_control_plane(
        world, live_server, settings, monkeypatch):
    settings.CORDUM_METRICS_TOKEN = METRICS_TOKEN
    w = world
    metrics_port = free_port()
    sidecar_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    seen_while_held: dict[str, float] = {}

    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        assert telemetry.setup("auto")  # the control plane (this process serves the live server) exports too
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
               "OTEL_METRIC_EXPORT_INTERVAL": "200", "CORDUM_SIDECAR_METRICS": f"127.0.0.1:{metrics_port}"}
        try:
            async def scenario():
                async with sidecar_session(w, env) as session:
                    read = await session.call_tool("read_text_file", {"path": str(w["project"] / "src" / "app.py")})
                    call = asyncio.create_task(session.call_tool(
                        "write_file", {"path": str(w["project"] / "src" / "app.py"), "content": "DEBUG = False\n"}))
                    request = await in_thread(lambda: wait_for_request(w["org"]))
                    seen_while_held.update(await asyncio.to_thread(scrape, sidecar_metrics))

                    def approve():
                        api = APIClient()
                        api.force_authenticate(w["alice"].user)
                        response = api.post(f"/api/v1/approval-requests/{request.pk}/decide",
                                            {"decision": "approve", "comment": "ok"}, format="json")
                        assert response.status_code == 200, response.content

                    await in_thread(approve)
                    written = await asyncio.wait_for(call, 120)
                    await in_thread(lambda: wait_for_executed(w["org"], request.decision_id))
                    after = await asyncio.to_thread(scrape, sidecar_metrics)
                    return read, written, request, after

            read, written, request, sidecar_after = asyncio.run(scenario())
            receiver.wait_for(lambda: sum(s["resource"]["service.name"] == "cordum-sidecar"
                                          for s in receiver.spans) == 2)
            control_plane = scrape(f"{live_server.url}/metrics", METRICS_TOKEN)
        finally:
            telemetry.uninstall()  # flushes the control plane's last metrics and spans to the receiver

    assert not read.is_error and not written.is_error
    assert (w["project"] / "src" / "app.py").read_text() == "DEBUG = False\n"

    # the sidecar, scraped while the write was held and after
    assert seen_while_held["cordum_sidecar_approvals_waiting"] == 1
    assert seen_while_held['cordum_sidecar_decisions_total{decision="require_approval"}'] == 1
    assert sidecar_after["cordum_sidecar_approvals_waiting"] == 0
    assert sidecar_after["cordum_sidecar_upload_failing"] == 0  # online: uploads to the live server succeed
    assert sidecar_after['cordum_sidecar_call_outcomes_total{outcome="approved"}'] == 1
    assert sidecar_after['cordum_sidecar_call_outcomes_total{outcome="executed"}'] == 2
    assert sidecar_after[f'cordum_sidecar_policy_in_force{{policy_version="{w["bundle"].manifest["version"]}"}}'] == 1

    # the sidecar's spans: the held call's span tells the whole story and carries the approval's decision id
    sidecar_spans = {s["attributes"]["cordum.decision"]: s for s in receiver.spans
                     if s["resource"]["service.name"] == "cordum-sidecar"}
    held = sidecar_spans["require_approval"]
    assert held["attributes"]["cordum.decision_id"] == request.decision_id
    assert held["attributes"]["cordum.rule"] == "approve-file-writes"
    assert held["attributes"]["cordum.outcome"] == "executed"
    assert held["events"] == [("cordum.approval", {"cordum.approval.outcome": "approved"})]
    assert held["attributes"]["cordum.policy_version"] == w["bundle"].manifest["version"]
    assert receiver.metric("cordum.sidecar.upload.failing") == 0

    # the control plane over OTLP: approvals opened and decided, time to decision, ingestion
    org_id = str(w["org"].pk)
    assert receiver.metric("cordum.approvals.opened", **{"cordum.org_id": org_id}) == 1
    assert receiver.metric("cordum.approvals.decided", **{"cordum.org_id": org_id, "cordum.state": "approved"}) == 1
    (wait,) = receiver.latest("cordum.approvals.time_to_decision")
    assert wait["value"] == 1 and wait["unit"] == "s" and wait["bounds"][0] == 5
    stored = EvidenceRecord.objects.filter(organization=w["org"]).count()  # decisions, outcomes, reviewer's outcome
    assert sum(p["value"] for p in receiver.latest("cordum.evidence.chained")) == stored
    assert receiver.metric("cordum.evidence.received", **{"cordum.org_id": org_id, "new": True}) >= 2
    approval_span = next(s for s in receiver.spans if s["name"] == "cordum.approval")
    assert approval_span["resource"]["service.name"] == "cordum-control-plane"
    assert approval_span["attributes"]["cordum.decision_id"] == request.decision_id
    assert approval_span["attributes"]["cordum.state"] == "approved"

    # the control plane's Prometheus /metrics, read from the database
    slug = w["org"].slug
    assert control_plane[f'cordum_approvals_opened_total{{org="{slug}"}}'] == 1
    assert control_plane[f'cordum_approvals_decided_total{{org="{slug}",state="approved"}}'] == 1
    assert control_plane[f'cordum_approvals_pending{{org="{slug}"}}'] == 0
    assert control_plane[f'cordum_approvals_time_to_decision_seconds_count{{org="{slug}",state="approved"}}'] == 1
    assert control_plane[f'cordum_evidence_records_total{{org="{slug}"}}'] == stored
