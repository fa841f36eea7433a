"""Telemetry where teams already look: the real sidecar, in front of the real filesystem MCP server, driven by
the real MCP SDK client, exports a span per decision and its metrics over OTLP to a real receiver, and serves
Prometheus /metrics. Nothing secret leaves: no argument, no secret from a target. Off, it exports nothing."""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from cordum.sidecar.config import ConfigError, config_from_dict
from cordum.sidecar.telemetry import TelemetrySettings, otlp_wanted, telemetry_from_settings
from tests.telemetry.otlp_receiver import OtlpReceiver

from .conftest import mcp_session, sidecar_env, sidecar_params, text_of, write_config

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # a GitHub-token-shaped string in a path
CONTENT_SECRET = "password=hunter2-do-not-export"

POLICY = """
version: v1
defaults: {decision: deny}
evidence: {redact: [content], redact_secret_values: true}
tools:
  - {server: filesystem, tool: "read_*", when: {args: {path: {glob: ["**/.env"]}}}, topic: job.mcp-bridge.read.secrets}
  - {server: filesystem, tool: ["read_*", "list_*"], topic: job.mcp-bridge.read.file, target: "{path}"}
  - {server: filesystem, tool: write_file, topic: job.mcp-bridge.write.file, target: "{path}", write: true}
  - {server: filesystem, tool: create_directory, topic: job.mcp-bridge.mkdir, target: "{path}"}
rules:
  - {id: allow-reads, match: {topics: ["job.mcp-bridge.read.file"]}, decision: allow, reason: reads are fine}
  - {id: deny-secrets, match: {topics: ["job.mcp-bridge.read.secrets"]}, decision: deny, reason: secrets}
  - {id: deny-writes, match: {topics: ["job.mcp-bridge.write.*"]}, decision: deny, reason: no writes here}
  - {id: approve-mkdir, match: {topics: ["job.mcp-bridge.mkdir"]}, decision: require_approval, reason: ask first}
"""

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str) -> dict[str, float]:
    """Prometheus text format -> {'name{labels}': value} for the sample lines."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def _drive(session, project: Path) -> dict[str, object]:
    outside = project.parent / "outside"
    return {
        "read": await session.call_tool("read_text_file", {"path": str(project / "README.md")}),
        "read_again": await session.call_tool("read_text_file", {"path": str(project / "README.md")}),
        "env": await session.call_tool("read_text_file", {"path": str(project / ".env")}),
        "write": await session.call_tool("write_file", {"path": str(outside / f"{TOKEN}.txt"),
                                                        "content": CONTENT_SECRET}),
        "mkdir": await session.call_tool("create_directory", {"path": str(project / "new")}),
    }


async def test_decisions_reach_an_otlp_receiver_as_spans_and_metrics_and_prometheus_scrapes_them(
        fs_server_bin, project, tmp_path):
    policy = tmp_path / "safety.yaml"
    policy.write_text(POLICY)
    metrics_port = free_port()
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
               "OTEL_METRIC_EXPORT_INTERVAL": "200", "OTEL_RESOURCE_ATTRIBUTES": "deployment.region=eu-west",
               "CORDUM_SIDECAR_METRICS": f"127.0.0.1:{metrics_port}"}
        args = ["run", "--bundle", str(policy), "--agent", "claude-code-mo", "--spool", str(tmp_path / "spool.db"),
                "--", fs_server_bin, str(project), str(project.parent / "outside")]
        async with mcp_session(sidecar_params(args, cwd=project, env=env)) as session:
            results = await _drive(session, project)
            prometheus = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
            # the last call's outcome (the held mkdir, refused offline) is in an export: so is everything before it
            receiver.wait_for(lambda: len(receiver.spans) == 5
                              and receiver.metric("cordum.sidecar.call.outcomes", **{"cordum.outcome": "denied"}) == 1)

    assert text_of(results["read"]) == "# hello from the project\n"
    assert results["env"].is_error and results["write"].is_error and results["mkdir"].is_error
    assert not (project / "new").exists()

    spans = {s["attributes"]["cordum.tool"] + ":" + s["attributes"]["cordum.decision"]: s for s in receiver.spans}
    assert all(s["name"] == "cordum.decision" for s in receiver.spans)
    read = spans["read_text_file:allow"]["attributes"]
    assert read["cordum.agent"] == "claude-code-mo" and read["cordum.session_id"].startswith("sess_")
    assert read["cordum.rule"] == "allow-reads" and read["cordum.action"] == "read.file"
    assert read["cordum.target"] == str(project / "README.md") and read["cordum.outcome"] == "executed"
    assert read["cordum.policy_version"].startswith("local:safety.yaml@") and read["cordum.tool"] == "read_text_file"
    assert spans["read_text_file:deny"]["attributes"]["cordum.rule"] == "deny-secrets"
    write = spans["write_file:deny"]["attributes"]
    assert write["cordum.outcome"] == "blocked" and write["cordum.rule"] == "deny-writes"
    assert TOKEN not in write["cordum.target"] and write["cordum.target"].endswith(".txt")
    held = spans["create_directory:require_approval"]
    assert held["attributes"]["cordum.outcome"] == "denied"  # offline: no reviewer to ask
    assert held["events"] == [("cordum.approval", {"cordum.approval.outcome": "denied"})]
    # the span ids match the evidence: one decision id per call, the same in both
    from cordum.sidecar.spool import Spool

    spooled = {r["decision_id"] for r in Spool(tmp_path / "spool.db").records()}
    assert {s["attributes"]["cordum.decision_id"] for s in receiver.spans} == spooled
    resource = receiver.spans[0]["resource"]
    assert resource["service.name"] == "cordum-sidecar" and resource["cordum.agent"] == "claude-code-mo"
    assert resource["deployment.region"] == "eu-west" and resource["service.instance.id"]
    # never an argument value, never a secret: not in any byte the receiver got
    everything = b"".join(receiver.raw)
    assert TOKEN.encode() not in everything and CONTENT_SECRET.encode() not in everything
    assert b"hello from the project" not in everything  # no result either

    assert receiver.metric("cordum.sidecar.decisions", **{"cordum.decision": "allow"}) == 2
    assert receiver.metric("cordum.sidecar.decisions", **{"cordum.decision": "deny"}) == 2
    assert receiver.metric("cordum.sidecar.decisions", **{"cordum.decision": "require_approval"}) == 1
    assert receiver.metric("cordum.sidecar.call.outcomes", **{"cordum.outcome": "blocked"}) == 2
    latency = receiver.latest("cordum.sidecar.decision.duration")
    assert sum(p["value"] for p in latency) == 5 and sum(p["sum"] for p in latency) > 0
    assert {p["unit"] for p in latency} == {"s"} and latency[0]["bounds"][0] == 0.000025
    assert receiver.metric("cordum.sidecar.policy.in_force") == 1
    assert receiver.metric("cordum.sidecar.spool.backlog") == 5  # offline: all five stay in the spool
    assert receiver.metric("cordum.sidecar.approvals.waiting") == 0

    assert prometheus['cordum_sidecar_decisions_total{decision="allow"}'] == 2
    assert prometheus['cordum_sidecar_decisions_total{decision="deny"}'] == 2
    assert prometheus['cordum_sidecar_call_outcomes_total{outcome="executed"}'] == 2
    assert prometheus["cordum_sidecar_decision_latency_seconds_count"] == 5
    assert prometheus["cordum_sidecar_spool_backlog"] == 5
    assert prometheus["cordum_sidecar_approvals_waiting"] == 0
    assert [v for k, v in prometheus.items() if k.startswith("cordum_sidecar_policy_in_force{")] == [1]
    assert "cordum_sidecar_upload_failing" not in prometheus  # offline (--bundle): nothing is uploaded


async def test_an_http_sidecar_serves_metrics_on_its_listener_and_refuses_foreign_hosts(fs_server_bin, project,
                                                                                         tmp_path):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    from .test_http import start_and_wait, stop

    port = free_port()
    config = write_config(tmp_path / "sidecar.yaml", listen=f"http://127.0.0.1:{port}/mcp", bundle=str(tmp_path / "p.yaml"),
                          spool=str(tmp_path / "spool.db"), telemetry={"prometheus": "on"},
                          upstreams=[{"name": "filesystem", "command": [fs_server_bin, str(project)]}])
    (tmp_path / "p.yaml").write_text(POLICY)
    proc = start_and_wait([sys.executable, "-m", "cordum.sidecar", "run", "--config", str(config)], cwd=project,
                          ready="Uvicorn running", env={**os.environ, **sidecar_env()})
    try:
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                await s.call_tool("read_text_file", {"path": str(project / "README.md")})
                await s.call_tool("read_text_file", {"path": str(project / ".env")})
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        foreign = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(foreign, timeout=10)
    finally:
        stop(proc)
    assert samples['cordum_sidecar_decisions_total{decision="allow"}'] == 1
    assert samples['cordum_sidecar_decisions_total{decision="deny"}'] == 1
    assert refused.value.code == 421


def test_telemetry_is_off_unless_asked_for(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "CORDUM_SIDECAR_OTLP", "CORDUM_SIDECAR_METRICS"):
        monkeypatch.delenv(name, raising=False)
    assert telemetry_from_settings(TelemetrySettings(), sidecar_id="s", agent="a", environment="dev",
                                   version="0") is None  # the enforcer then skips telemetry entirely
    assert not otlp_wanted("auto", {})
    assert otlp_wanted("auto", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not otlp_wanted("auto", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"})
    assert not otlp_wanted("off", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert otlp_wanted("on", {})
    assert TelemetrySettings(otlp="off").with_environment({"CORDUM_SIDECAR_OTLP": "on"}).otlp == "on"


@pytest.mark.parametrize(("raw", "field"), [
    ({"otlp": "maybe"}, "telemetry.otlp"),
    ({"prometheus": "9464"}, "telemetry.prometheus"),
    ({"prometheus": "host:99999"}, "telemetry.prometheus"),
    ({"exporter": "jaeger"}, "telemetry: unknown key"),
    ("on", "telemetry: a mapping"),
])
def test_a_bad_telemetry_setting_is_refused_naming_it(raw, field):
    with pytest.raises(ConfigError, match=field):
        config_from_dict({"telemetry": raw})


def test_status_says_what_a_sidecar_started_here_would_export(tmp_path):
    import json
    import subprocess

    config = write_config(tmp_path / "sidecar.yaml", spool=str(tmp_path / "spool.db"), telemetry={"otlp": "auto"})
    status = [sys.executable, "-m", "cordum.sidecar", "status", "--config", str(config)]
    quiet = json.loads(subprocess.run(status, capture_output=True, env=sidecar_env(), check=True).stdout)
    assert quiet["telemetry"] == {"otlp": False, "otlp_endpoint": None, "prometheus": "off"}
    env = sidecar_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318", CORDUM_SIDECAR_METRICS="127.0.0.1:9464")
    on = json.loads(subprocess.run(status, capture_output=True, env=env, check=True).stdout)
    assert on["telemetry"] == {"otlp": True, "otlp_endpoint": "http://collector:4318", "prometheus": "127.0.0.1:9464"}


async def test_an_unreachable_collector_never_affects_enforcement(fs_server_bin, project, tmp_path):
    policy = tmp_path / "safety.yaml"
    policy.write_text(POLICY)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": dead, "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_METRIC_EXPORT_INTERVAL": "50"}
    args = ["run", "--bundle", str(policy), "--spool", str(tmp_path / "spool.db"), "--", fs_server_bin, str(project)]
    async with mcp_session(sidecar_params(args, cwd=project, env=env)) as session:
        results = [await session.call_tool("read_text_file", {"path": str(project / "README.md")}) for _ in range(5)]
        denied = await session.call_tool("read_text_file", {"path": str(project / ".env")})
    assert [text_of(r) for r in results] == ["# hello from the project\n"] * 5
    assert denied.is_error and "deny-secrets" in text_of(denied)
    from cordum.sidecar.spool import Spool

    assert [r["outcome"] for r in Spool(tmp_path / "spool.db").records()] == ["executed"] * 5 + ["blocked"]
