"""Telemetry end to end, all real: an MCP client calls through a real `cordum-sidecar` (in front of the real
filesystem server) that enforces the bundle a live control plane published; a write is held, a reviewer approves
it through the API. A real OTLP receiver gets the sidecar's spans and metrics and the control plane's approval and
ingestion metrics (and its approval span, joined to the sidecar's by decision id); Prometheus /metrics is scraped
from the sidecar (while the call is held, and after) and from the control plane."""

import asyncio
import os
import socket
import sys
import urllib.request
from contextlib import asynccontextmanager

import pytest
from rest_framework.test import APIClient

from cordum.common import telemetry
from cordum.decisions.models import EvidenceRecord
from tests.approvals.test_end_to_end import (  # noqa: F401  (fixtures)
    REPO,
    fs_server_bin,
    in_thread,
    wait_for_evidence,
    wait_for_request,
    world,
)
from tests.telemetry.otlp_receiver import OtlpReceiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

METRICS_TOKEN = "scrape-me-0123456789"


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
        world, live_server, settings, monkeypatch):  # noqa: F811
    settings.CORDUM_METRICS_TOKEN = METRICS_TOKEN
    w = world()
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
                    await in_thread(lambda: wait_for_evidence(
                        w["org"], request.decision_id,
                        lambda rows: any(r.outcome == "executed" for r in rows)))
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
