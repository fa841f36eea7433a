"""Telemetry where teams already look: OpenTelemetry (OTLP) spans and metrics, and Prometheus `/metrics`.

Both are off by default. With both off the sidecar never imports either library and the hot path pays one
`is not None` test per call. Switches (sidecar.yaml `telemetry:`, or the environment, which wins):

- OTLP: `otlp: auto | on | off` (env `CORDUM_SIDECAR_OTLP`). `auto` (the default) turns it on when a standard
  `OTEL_EXPORTER_OTLP_ENDPOINT` (or `_TRACES_ENDPOINT` / `_METRICS_ENDPOINT`) is set and `OTEL_SDK_DISABLED` is
  not true. Everything else comes from the standard variables the OpenTelemetry SDK reads (endpoint, headers,
  timeout, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_TRACES_EXPORTER=
  none`, `OTEL_METRICS_EXPORTER=none`). The exporter speaks OTLP over HTTP with protobuf (port 4318).
- Prometheus: `prometheus: off | on | HOST:PORT` (env `CORDUM_SIDECAR_METRICS`). `on` serves `/metrics` on the
  HTTP listener (`listen: http://...`); `HOST:PORT` starts a listener of its own (what a stdio sidecar needs).

One span per decided call (`cordum.decision`), from the decision to the call's final outcome, with the
agent, session, server, tool, action, target (in its redacted form), decision, rule, policy version and
decision id: never an argument, never a secret, never the result. Metrics: decisions by decision, call
outcomes, decision latency, approvals waiting, results with secrets masked, spool backlog, policy in force.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("cordum.sidecar.telemetry")

OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                      "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
# Decision latency is tens of microseconds: the SDK's default buckets (0, 5, 10, 25 ... seconds) would put
# every call in the first one.
LATENCY_BUCKETS_SECONDS = (0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25)
SPAN_NAME = "cordum.decision"
SHUTDOWN_SECONDS = 5.0  # a collector that does not answer must not hold the agent's exit for long


class TelemetryConfigError(ValueError):
    """A telemetry setting is invalid; the message names it."""


@dataclass(frozen=True)
class TelemetrySettings:
    otlp: str = "auto"        # auto | on | off
    prometheus: str = "off"   # off | on | HOST:PORT

    def __post_init__(self) -> None:
        if self.otlp not in ("auto", "on", "off"):
            raise TelemetryConfigError(f"telemetry.otlp: auto, on or off; got {self.otlp!r}")
        if self.prometheus not in ("on", "off"):
            prometheus_address(self.prometheus)  # raises with the setting's name

    @classmethod
    def from_dict(cls, raw: Any) -> TelemetrySettings:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise TelemetryConfigError("telemetry: a mapping with otlp and/or prometheus")
        unknown = set(raw) - {"otlp", "prometheus"}
        if unknown:
            raise TelemetryConfigError(f"telemetry: unknown key(s) {', '.join(sorted(unknown))}")
        return cls(otlp=_switch(raw.get("otlp", "auto")), prometheus=_switch(raw.get("prometheus", "off")))

    def with_environment(self, env: dict[str, str] | None = None) -> TelemetrySettings:
        """The environment overrides the file (one `.mcp.json` entry can turn telemetry on for its sidecar)."""
        env = os.environ if env is None else env
        return TelemetrySettings(otlp=_switch(env.get("CORDUM_SIDECAR_OTLP") or self.otlp),
                                 prometheus=_switch(env.get("CORDUM_SIDECAR_METRICS") or self.prometheus))


def _switch(value: Any) -> str:
    if value is True:
        return "on"
    if value is False or value is None:
        return "off"
    text = str(value).strip()
    return {"true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "0": "off"}.get(text.lower(), text)


def prometheus_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise TelemetryConfigError(f"telemetry.prometheus: off, on or HOST:PORT (e.g. 127.0.0.1:9464); got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def otlp_wanted(setting: str, env: dict[str, str] | None = None) -> bool:
    """on: yes; off: no; auto: yes when a standard OTLP endpoint variable is set and the SDK is not disabled."""
    env = os.environ if env is None else env
    if setting == "off" or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return setting == "on" or any(env.get(name) for name in OTLP_ENDPOINT_VARS)


@dataclass
class OtlpProviders:
    """The SDK pieces one process exports with (OTLP over HTTP/protobuf). `tracer` is None when
    OTEL_TRACES_EXPORTER=none, `meter` None when OTEL_METRICS_EXPORTER=none."""

    tracer_provider: Any = None
    meter_provider: Any = None
    tracer: Any = None
    meter: Any = None

    def shutdown(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Flush what is buffered (final metric values included) and stop, waiting at most `timeout` seconds."""
        def run() -> None:
            for provider in (self.tracer_provider, self.meter_provider):
                if provider is not None:
                    try:
                        provider.shutdown()
                    except Exception:  # telemetry never breaks the sidecar
                        log.warning("telemetry shutdown failed", exc_info=True)

        worker = threading.Thread(target=run, name="otlp-shutdown", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            log.warning("telemetry: the OTLP collector did not take the last export in time; dropped")


def otlp_providers(*, service_name: str, scope: str, attributes: dict[str, Any],
                   env: dict[str, str] | None = None) -> OtlpProviders:
    """A tracer and a meter exporting over OTLP/HTTP, configured by the standard OTEL_* variables.
    `attributes` become resource attributes (OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME still win)."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    env = os.environ if env is None else env
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if protocol != "http/protobuf":
        log.warning("telemetry: only OTLP over http/protobuf is built in; exporting with it",
                    extra={"OTEL_EXPORTER_OTLP_PROTOCOL": protocol})
    base = {"service.name": service_name, **{k: v for k, v in attributes.items() if v is not None}}
    resource = Resource.create(base)  # merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over `base`
    out = OtlpProviders()
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none":
        out.tracer_provider = TracerProvider(resource=resource)
        out.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        out.tracer = out.tracer_provider.get_tracer(scope)
    if env.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() != "none":
        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        out.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        out.meter = out.meter_provider.get_meter(scope)
    return out


def _never_raises(method):
    """Telemetry runs inside enforcement: a failure is logged, never passed to the call it observes."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except Exception:
            log.warning("telemetry failed; the call is unaffected", exc_info=True)
            return None

    return wrapper


def _span_attributes(record: dict[str, Any]) -> dict[str, Any]:
    """What a span may say about a call: who, which tool, what was decided and by which rule. The target is
    the evidence record's (already redacted by the policy); arguments, results and reasons never go out."""
    attrs = {
        "cordum.decision_id": record.get("decision_id"),
        "cordum.agent": record.get("agent"),
        "cordum.team": record.get("team"),
        "cordum.environment": record.get("environment"),
        "cordum.session_id": record.get("session_id"),
        "cordum.server": record.get("server"),
        "cordum.tool": record.get("tool"),
        "cordum.action": record.get("action"),
        "cordum.target": record.get("target"),
        "cordum.topic": record.get("topic"),
        "cordum.decision": record.get("decision"),
        "cordum.rule": record.get("rule"),
        "cordum.policy_version": record.get("policy_version"),
        "cordum.risk_tags": list(record.get("risk_tags") or []),
        # the MCP semantic conventions' names, so generic MCP dashboards pick the spans up
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": record.get("tool"),
        "mcp.session.id": record.get("session_id"),
    }
    return {k: v for k, v in attrs.items() if v is not None and v != ""}


class _LazyState(dict):
    """A health mapping whose callable values are called when read (None if that fails)."""

    def get(self, key, default=None):
        value = super().get(key, default)
        if callable(value):
            try:
                return value()
            except Exception:
                log.debug("telemetry: %s unavailable", key, exc_info=True)
                return None
        return value

    def __getitem__(self, key):
        return self.get(key)


class _Prometheus:
    """The sidecar's own registry (never the process-global one): counters and a latency histogram updated
    on each call, and gauges read at scrape time."""

    def __init__(self, health: Callable[[], dict[str, Any]], approvals_waiting: Callable[[], int]):
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.core import GaugeMetricFamily

        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter("cordum_sidecar_decisions", "Tool calls decided, by decision.", ["decision"],
                                 registry=self.registry)
        self.outcomes = Counter("cordum_sidecar_call_outcomes", "Tool call outcomes (executed, failed, approved, "
                                "denied, timed_out, cancelled, ...).", ["outcome"], registry=self.registry)
        self.masked = Counter("cordum_sidecar_results_masked", "Tool results in which secrets were masked or "
                              "that were withheld.", registry=self.registry)
        self.latency = Histogram("cordum_sidecar_decision_latency_seconds", "Time to decide one call (policy, "
                                 "limits, evidence record).", buckets=LATENCY_BUCKETS_SECONDS, registry=self.registry)

        class Health:
            def collect(self):
                state = health()
                waiting = GaugeMetricFamily("cordum_sidecar_approvals_waiting", "Calls held, waiting for a reviewer.")
                waiting.add_metric([], approvals_waiting())
                backlog = GaugeMetricFamily("cordum_sidecar_spool_backlog",
                                            "Evidence records in the spool waiting for upload.")
                backlog.add_metric([], state.get("spool_backlog") or 0)
                policy = GaugeMetricFamily("cordum_sidecar_policy_in_force", "1 while a valid policy is enforced, "
                                           "0 while every call is denied for want of one.", labels=["policy_version"])
                policy.add_metric([state.get("policy_version") or ""], 1 if state.get("policy_version") else 0)
                yield from (waiting, backlog, policy)
                if state.get("upload_failing") is not None:  # online sidecars only
                    failing = GaugeMetricFamily("cordum_sidecar_upload_failing", "1 while evidence uploads to the "
                                                "control plane fail (they are retried; nothing is lost).")
                    failing.add_metric([], 1 if state["upload_failing"] else 0)
                    yield failing
                if state.get("last_upload_at"):
                    last = GaugeMetricFamily("cordum_sidecar_last_upload_timestamp_seconds", "When the control "
                                             "plane last acknowledged an upload (Unix time).")
                    last.add_metric([], state["last_upload_at"])
                    yield last

            def describe(self):
                return []

        self.registry.register(Health())

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Telemetry:
    """Called by the enforcer on each decision and outcome. Build it with `telemetry_from_settings`, which
    returns None when everything is off (the enforcer then skips it entirely)."""

    def __init__(self, *, otlp: OtlpProviders | None, prometheus: bool,
                 health: Callable[[], dict[str, Any]] | None = None):
        self._health = health or dict
        self._lock = threading.Lock()
        self._open: dict[str, Any] = {}      # decision_id -> span, until the call's final outcome
        self._waiting: set[str] = set()      # decision ids held for approval
        self.otlp = otlp
        self.tracer = otlp.tracer if otlp else None
        self.prometheus = _Prometheus(self.health, lambda: len(self._waiting)) if prometheus else None
        self._metrics_server: Any = None
        meter = otlp.meter if otlp else None
        self._otel = meter is not None
        if meter is not None:
            from opentelemetry.metrics import Observation

            self._decisions = meter.create_counter("cordum.sidecar.decisions", unit="{call}",
                                                   description="Tool calls decided, by decision.")
            self._outcomes = meter.create_counter("cordum.sidecar.call.outcomes", unit="{call}",
                                                  description="Tool call outcomes.")
            self._masked = meter.create_counter("cordum.sidecar.results.masked", unit="{result}",
                                                description="Tool results with secrets masked or withheld.")
            self._latency = meter.create_histogram("cordum.sidecar.decision.duration", unit="s",
                                                   description="Time to decide one call.",
                                                   explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_SECONDS)
            meter.create_observable_gauge(
                "cordum.sidecar.approvals.waiting", unit="{call}", description="Calls held for a reviewer.",
                callbacks=[lambda _options: [Observation(len(self._waiting))]])
            meter.create_observable_gauge(
                "cordum.sidecar.spool.backlog", unit="{record}", description="Evidence records waiting for upload.",
                callbacks=[lambda _options: [Observation(self.health().get("spool_backlog") or 0)]])
            meter.create_observable_gauge(
                "cordum.sidecar.upload.failing", description="1 while evidence uploads fail (online sidecars).",
                callbacks=[lambda _options: self._observe("upload_failing", int)])
            meter.create_observable_gauge(
                "cordum.sidecar.upload.last", unit="s", description="When the control plane last acknowledged an "
                "upload (Unix time).", callbacks=[lambda _options: self._observe("last_upload_at", float)])
            meter.create_observable_gauge(
                "cordum.sidecar.policy.in_force", description="1 while a valid policy is enforced, else 0.",
                callbacks=[lambda _options: [Observation(1 if self.health().get("policy_version") else 0)]])

    def set_health(self, health: Callable[[], dict[str, Any]]) -> None:
        self._health = health

    def _observe(self, key: str, kind: type) -> list:
        from opentelemetry.metrics import Observation

        value = self.health().get(key)
        return [] if value is None else [Observation(kind(value))]

    def health(self) -> dict[str, Any]:
        """The sidecar's state as `set_health` reports it. A value given as a callable (the spool's depth, a
        query) is only computed when read, once per gauge per scrape or export."""
        try:
            state = self._health()
        except Exception:  # read at scrape/export time, from another thread: never fatal
            log.debug("telemetry: health unavailable", exc_info=True)
            return {}
        return _LazyState(state)

    # -- events from the enforcer -------------------------------------------------------------------

    @_never_raises
    def decided(self, record: dict[str, Any]) -> None:
        decision = record.get("decision") or ""
        latency = (record.get("latency_us") or 0) / 1_000_000
        decision_id = record.get("decision_id") or ""
        if decision == "require_approval":
            with self._lock:
                self._waiting.add(decision_id)
        closed = record.get("outcome")  # a denied call ends here ("blocked")
        if self.prometheus is not None:
            self.prometheus.decisions.labels(decision).inc()
            self.prometheus.latency.observe(latency)
            if closed:
                self.prometheus.outcomes.labels(closed).inc()
        if self._otel:
            attrs = {"cordum.decision": decision}
            self._decisions.add(1, attrs)
            self._latency.record(latency, attrs)
            if closed:
                self._outcomes.add(1, {"cordum.outcome": closed})
        if self.tracer is not None:
            span = self.tracer.start_span(SPAN_NAME, attributes=_span_attributes(record),
                                          start_time=time.time_ns() - int(latency * 1e9))
            if closed:
                span.set_attribute("cordum.outcome", closed)
                span.end()
            else:
                with self._lock:
                    self._open[decision_id] = span

    @_never_raises
    def outcome(self, record: dict[str, Any], outcome: str, *, final: bool, facts: dict[str, Any] | None) -> None:
        decision_id = record.get("decision_id") or ""
        with self._lock:
            was_waiting = decision_id in self._waiting
            self._waiting.discard(decision_id)
            span = self._open.pop(decision_id, None) if final else self._open.get(decision_id)
        if self.prometheus is not None:
            self.prometheus.outcomes.labels(outcome).inc()
            if facts:
                self.prometheus.masked.inc()
        if self._otel:
            self._outcomes.add(1, {"cordum.outcome": outcome})
            if facts:
                self._masked.add(1, {"cordum.withheld": bool(facts.get("withheld"))})
        if span is not None:
            self._annotate(span, outcome, was_waiting=was_waiting, final=final, facts=facts)

    @staticmethod
    def _annotate(span: Any, outcome: str, *, was_waiting: bool, final: bool, facts: dict[str, Any] | None) -> None:
        if was_waiting:
            span.add_event("cordum.approval", {"cordum.approval.outcome": outcome})
        if facts:
            span.set_attribute("cordum.result.masked", sum((facts.get("masked") or {}).values()))
            span.set_attribute("cordum.result.withheld", bool(facts.get("withheld")))
        if final:
            span.set_attribute("cordum.outcome", outcome)
            if outcome == "failed":
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, "the upstream call failed"))
            span.end()

    # -- serving and stopping -----------------------------------------------------------------------

    def serve_metrics(self, address: str) -> bool:
        """Serve /metrics on HOST:PORT from a thread. False (with a warning) when the port is taken, e.g. by
        another sidecar started from the same config: telemetry never stops a sidecar."""
        if self.prometheus is None:
            return False
        from prometheus_client import start_http_server

        host, port = prometheus_address(address)
        try:
            self._metrics_server, _thread = start_http_server(port, addr=host, registry=self.prometheus.registry)
        except OSError as exc:
            log.warning("telemetry: cannot serve /metrics", extra={"address": address, "error": str(exc)})
            return False
        log.info("prometheus metrics", extra={"url": f"http://{host}:{port}/metrics"})
        return True

    def shutdown(self) -> None:
        with self._lock:
            left = list(self._open.values())
            self._open.clear()
        for span in left:  # calls whose outcome never came: closed, saying so
            span.set_attribute("cordum.outcome", "unknown")
            span.end()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None
        if self.otlp is not None:
            self.otlp.shutdown()


def telemetry_from_settings(settings: TelemetrySettings, *, sidecar_id: str, agent: str, environment: str,
                            version: str, listener: bool = False) -> Telemetry | None:
    """The sidecar's telemetry, or None when OTLP and Prometheus are both off (nothing imported, nothing run).
    `listener`: the sidecar has an HTTP listener that serves /metrics itself when prometheus is `on`."""
    settings = settings.with_environment()
    otlp = None
    if otlp_wanted(settings.otlp):
        otlp = otlp_providers(service_name="cordum-sidecar", scope="cordum.sidecar", attributes={
            "service.version": version, "service.instance.id": sidecar_id, "cordum.agent": agent,
            "deployment.environment.name": environment})
    prometheus = settings.prometheus != "off"
    if settings.prometheus == "on" and not listener:
        log.warning("telemetry.prometheus: on serves /metrics on the HTTP listener; a stdio sidecar needs "
                    "HOST:PORT (e.g. 127.0.0.1:9464)")
        prometheus = False
    if otlp is None and not prometheus:
        return None
    telemetry = Telemetry(otlp=otlp, prometheus=prometheus)
    if settings.prometheus not in ("on", "off"):
        telemetry.serve_metrics(settings.prometheus)
    return telemetry
