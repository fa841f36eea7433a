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

import asyncio
import functools
import logging
import os
import threading
import time
from bisect import bisect_left
from collections import Counter
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


class _Buckets:
    """A latency histogram as Prometheus exposes it: counts per upper bound (cumulative on read), sum, count."""

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> tuple[list[tuple[str, int]], float]:
        counts, total, out = list(self.counts), 0, []
        for bound, n in zip((*map(str, self.bounds), "+Inf"), counts, strict=True):
            total += n
            out.append((bound, total))
        return out, self.sum


class Telemetry:
    """Called by the enforcer on each decision and outcome. Build it with `telemetry_from_settings`, which
    returns None when everything is off (the enforcer then skips it entirely).

    On the call's path it only counts (plain dict increments, a histogram bucket): the Prometheus collector and
    OTLP's observable counters read those totals when scraped or exported, from their own threads. The SDK work
    (spans, the OTLP latency histogram) is handed to the event loop with `call_soon`, so it runs after the call
    was forwarded or answered, not before."""

    def __init__(self, *, otlp: OtlpProviders | None, prometheus: bool,
                 health: Callable[[], dict[str, Any]] | None = None):
        self._health = health or dict
        self._lock = threading.Lock()
        self._open: dict[str, tuple[int, dict[str, Any], list]] = {}  # decision_id -> (start ns, record, events)
        self._waiting: set[str] = set()      # decision ids held for approval
        self.decisions: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.masked: Counter[bool] = Counter()  # by withheld
        self.latency = _Buckets(LATENCY_BUCKETS_SECONDS)
        self.otlp = otlp
        self.tracer = otlp.tracer if otlp else None
        self.registry = self._prometheus_registry() if prometheus else None  # None: Prometheus is off
        self._metrics_server: Any = None
        self._otel_latency = self._otel_instruments(otlp.meter) if otlp and otlp.meter is not None else None

    # -- what is exported, read from the exporters' threads -------------------------------------------

    def set_health(self, health: Callable[[], dict[str, Any]]) -> None:
        self._health = health

    def health(self) -> dict[str, Any]:
        """The sidecar's state as `set_health` reports it. A value given as a callable (the spool's depth, a
        query) is only computed when read, once per gauge per scrape or export."""
        try:
            state = self._health()
        except Exception:  # read at scrape/export time, from another thread: never fatal
            log.debug("telemetry: health unavailable", exc_info=True)
            return {}
        return _LazyState(state)

    def _otel_instruments(self, meter: Any) -> Any:
        from opentelemetry.metrics import Observation

        def totals(counter: Counter, attribute: str):
            return lambda _options: [Observation(n, {attribute: key}) for key, n in dict(counter).items()]

        def state(key: str, kind: type):
            def observe(_options):
                value = self.health().get(key)
                return [] if value is None else [Observation(kind(value))]
            return observe

        meter.create_observable_counter("cordum.sidecar.decisions", unit="{call}", description="Tool calls "
                                        "decided, by decision.", callbacks=[totals(self.decisions, "cordum.decision")])
        meter.create_observable_counter("cordum.sidecar.call.outcomes", unit="{call}", description="Tool call "
                                        "outcomes.", callbacks=[totals(self.outcomes, "cordum.outcome")])
        meter.create_observable_counter("cordum.sidecar.results.masked", unit="{result}", description="Tool results "
                                        "with secrets masked or withheld.", callbacks=[totals(self.masked,
                                                                                              "cordum.withheld")])
        meter.create_observable_gauge("cordum.sidecar.approvals.waiting", unit="{call}", description="Calls held "
                                      "for a reviewer.", callbacks=[lambda _o: [Observation(len(self._waiting))]])
        meter.create_observable_gauge("cordum.sidecar.spool.backlog", unit="{record}", description="Evidence "
                                      "records waiting for upload.", callbacks=[state("spool_backlog", int)])
        meter.create_observable_gauge("cordum.sidecar.upload.failing", description="1 while evidence uploads fail "
                                      "(online sidecars).", callbacks=[state("upload_failing", int)])
        meter.create_observable_gauge("cordum.sidecar.upload.last", unit="s", description="When the control plane "
                                      "last acknowledged an upload (Unix time).",
                                      callbacks=[state("last_upload_at", float)])
        meter.create_observable_gauge("cordum.sidecar.policy.in_force", description="1 while a valid policy is "
                                      "enforced, else 0.", callbacks=[lambda _o: [Observation(
                                          1 if self.health().get("policy_version") else 0)]])
        return meter.create_histogram("cordum.sidecar.decision.duration", unit="s", description="Time to decide "
                                      "one call.", explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_SECONDS)

    def _prometheus_registry(self) -> Any:
        """The sidecar's own registry (never the process-global one), collected from the totals at scrape time."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        telemetry = self

        def counter(name: str, text: str, label: str, totals: Counter) -> Any:
            family = CounterMetricFamily(name, text, labels=[label] if label else [])
            for key, n in sorted(dict(totals).items(), key=lambda kv: str(kv[0])):
                family.add_metric([str(key)] if label else [], n)
            return family

        def gauge(name: str, text: str, value: float, labels: dict[str, str] | None = None) -> Any:
            family = GaugeMetricFamily(name, text, labels=list(labels or {}))
            family.add_metric(list((labels or {}).values()), value)
            return family

        class Collector:
            def collect(self):
                yield counter("cordum_sidecar_decisions", "Tool calls decided, by decision.", "decision",
                              telemetry.decisions)
                yield counter("cordum_sidecar_call_outcomes", "Tool call outcomes (executed, failed, approved, "
                              "denied, timed_out, cancelled, blocked, ...).", "outcome", telemetry.outcomes)
                yield counter("cordum_sidecar_results_masked", "Tool results in which secrets were masked or "
                              "that were withheld.", "", Counter({"": sum(telemetry.masked.values())}))
                latency = HistogramMetricFamily("cordum_sidecar_decision_latency_seconds", "Time to decide one call "
                                                "(policy, limits, evidence record).")
                buckets, total = telemetry.latency.cumulative()
                latency.add_metric([], buckets, sum_value=total)
                yield latency
                state = telemetry.health()
                yield gauge("cordum_sidecar_approvals_waiting", "Calls held, waiting for a reviewer.",
                            len(telemetry._waiting))
                yield gauge("cordum_sidecar_spool_backlog", "Evidence records in the spool waiting for upload.",
                            state.get("spool_backlog") or 0)
                version = state.get("policy_version")
                yield gauge("cordum_sidecar_policy_in_force", "1 while a valid policy is enforced, 0 while every "
                            "call is denied for want of one.", 1 if version else 0, {"policy_version": version or ""})
                if state.get("upload_failing") is not None:  # online sidecars only
                    yield gauge("cordum_sidecar_upload_failing", "1 while evidence uploads to the control plane "
                                "fail (they are retried; nothing is lost).", 1 if state["upload_failing"] else 0)
                if state.get("last_upload_at"):
                    yield gauge("cordum_sidecar_last_upload_timestamp_seconds", "When the control plane last "
                                "acknowledged an upload (Unix time).", state["last_upload_at"])

            def describe(self):
                return []

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector())
        return registry

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- events from the enforcer, on the call's path -------------------------------------------------

    @_never_raises
    def decided(self, record: dict[str, Any]) -> None:
        decision = record.get("decision") or ""
        latency = (record.get("latency_us") or 0) / 1_000_000
        closed = record.get("outcome")  # a denied call ends here ("blocked")
        self.decisions[decision] += 1
        self.latency.observe(latency)
        if closed:
            self.outcomes[closed] += 1
        if decision == "require_approval":
            with self._lock:
                self._waiting.add(record.get("decision_id") or "")
        if self._otel_latency is not None or self.tracer is not None:
            _soon(self._export_decision, record, decision, latency, time.time_ns() - int(latency * 1e9))

    @_never_raises
    def outcome(self, record: dict[str, Any], outcome: str, *, final: bool, facts: dict[str, Any] | None) -> None:
        decision_id = record.get("decision_id") or ""
        with self._lock:
            was_waiting = decision_id in self._waiting
            self._waiting.discard(decision_id)
        self.outcomes[outcome] += 1
        if facts:
            self.masked[bool(facts.get("withheld"))] += 1
        if self.tracer is not None:
            _soon(self._export_outcome, decision_id, outcome, final, facts, was_waiting, time.time_ns())

    # -- SDK work, after the call was forwarded or answered -------------------------------------------

    @_never_raises
    def _export_decision(self, record: dict[str, Any], decision: str, latency: float, start_ns: int) -> None:
        if self._otel_latency is not None:
            self._otel_latency.record(latency, {"cordum.decision": decision})
        if self.tracer is None:
            return
        if record.get("outcome"):
            self._emit(record, start_ns, [], record["outcome"], None, end_ns=None)
        else:
            with self._lock:
                self._open[record.get("decision_id") or ""] = (start_ns, record, [])

    @_never_raises
    def _export_outcome(self, decision_id: str, outcome: str, final: bool, facts: dict[str, Any] | None,
                        was_waiting: bool, at_ns: int) -> None:
        with self._lock:
            entry = self._open.pop(decision_id, None) if final else self._open.get(decision_id)
        if entry is None:
            return
        start_ns, record, events = entry
        if was_waiting:
            events.append(("cordum.approval", {"cordum.approval.outcome": outcome}, at_ns))
        if final:
            self._emit(record, start_ns, events, outcome, facts, end_ns=at_ns)

    def _emit(self, record: dict[str, Any], start_ns: int, events: list, outcome: str,
              facts: dict[str, Any] | None, *, end_ns: int | None) -> None:
        attributes = _span_attributes(record)
        attributes["cordum.outcome"] = outcome
        if facts:
            attributes["cordum.result.masked"] = sum((facts.get("masked") or {}).values())
            attributes["cordum.result.withheld"] = bool(facts.get("withheld"))
        span = self.tracer.start_span(SPAN_NAME, attributes=attributes, start_time=start_ns)
        for name, attrs, at in events:
            span.add_event(name, attrs, timestamp=at)
        if outcome == "failed":
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, "the upstream call failed"))
        span.end(end_time=end_ns)

    # -- serving and stopping -----------------------------------------------------------------------

    def serve_metrics(self, address: str) -> bool:
        """Serve /metrics on HOST:PORT from a thread. False (with a warning) when the port is taken, e.g. by
        another sidecar started from the same config: telemetry never stops a sidecar."""
        if self.registry is None:
            return False
        from prometheus_client import start_http_server

        host, port = prometheus_address(address)
        try:
            self._metrics_server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.warning("telemetry: cannot serve /metrics", extra={"address": address, "error": str(exc)})
            return False
        log.info("prometheus metrics", extra={"url": f"http://{host}:{port}/metrics"})
        return True

    def shutdown(self) -> None:
        with self._lock:
            left = list(self._open.values())
            self._open.clear()
        for start_ns, record, events in left:  # calls whose outcome never came: closed, saying so
            self._emit(record, start_ns, events, "unknown", None, end_ns=None)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None
        if self.otlp is not None:
            self.otlp.shutdown()


def _soon(fn: Callable[..., Any], *args: Any) -> None:
    """Run `fn` on the running event loop once the current step (forwarding or answering the call) is done;
    at once when there is no loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)
        return
    loop.call_soon(fn, *args)


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
