"""The control plane's OpenTelemetry export (OTLP over HTTP): approvals and evidence ingestion, as they happen.

Off by default. `CORDUM_OTLP=auto` (the default) turns it on when a standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`_TRACES_` / `_METRICS_` endpoint) is set; `on` / `off` force it. Every other knob is a standard OTEL_* variable
(see docs/operations/telemetry.md). Each process (web worker, Celery worker) exports its own counts under its
own `service.instance.id`; the collector adds them up. The Prometheus `/metrics` endpoint (cordum.common.metrics)
reads the database instead, so it is the same whichever process answers the scrape.

Services call the module functions below; with telemetry off each is one `is None` test.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from typing import Any

from cordum.sidecar.telemetry import OtlpProviders, otlp_providers, otlp_wanted

log = logging.getLogger(__name__)

# Seconds from an approval request to its decision: reviewers answer in seconds to hours.
DECISION_BUCKETS_SECONDS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)
SCOPE = "cordum.control_plane"

_metrics: ControlPlaneTelemetry | None = None


class ControlPlaneTelemetry:
    def __init__(self, providers: OtlpProviders):
        self.providers = providers
        self.tracer = providers.tracer
        meter = providers.meter
        self.metered = meter is not None
        if meter is None:
            return
        self.opened = meter.create_counter("cordum.approvals.opened", unit="{request}",
                                           description="Approval requests opened by sidecars.")
        self.decided = meter.create_counter("cordum.approvals.decided", unit="{request}",
                                            description="Approval requests closed: approved, denied, expired, "
                                                        "cancelled.")
        self.time_to_decision = meter.create_histogram(
            "cordum.approvals.time_to_decision", unit="s", description="From request to decision.",
            explicit_bucket_boundaries_advisory=DECISION_BUCKETS_SECONDS)
        self.received = meter.create_counter("cordum.evidence.received", unit="{record}",
                                             description="Evidence records accepted from sidecars (a re-sent "
                                                         "record counts again, new=false).")
        self.chained = meter.create_counter("cordum.evidence.chained", unit="{record}",
                                            description="Evidence records written to the hash chain.")
        self.quarantined = meter.create_counter("cordum.evidence.batches.quarantined", unit="{batch}",
                                                description="Upload batches the database refused on their own.")


def install(providers: OtlpProviders) -> ControlPlaneTelemetry:
    """Export through `providers` from now on (replacing, and shutting down, any earlier ones)."""
    global _metrics
    uninstall()
    _metrics = ControlPlaneTelemetry(providers)
    return _metrics


def uninstall() -> None:
    """Flush what is buffered and stop exporting."""
    global _metrics
    current, _metrics = _metrics, None
    if current is not None:
        current.providers.shutdown()


def setup(setting: str) -> bool:
    """At start-up (CommonConfig.ready): export over OTLP when `setting` (CORDUM_OTLP) and the environment say so."""
    if not otlp_wanted(setting):
        return False
    from cordum.sidecar import __version__

    install(otlp_providers(service_name="cordum-control-plane", scope=SCOPE, attributes={
        "service.version": __version__, "service.instance.id": f"{socket.gethostname()}:{os.getpid()}"}))
    log.info("OpenTelemetry export on (OTLP/HTTP)")
    return True


def _safe(fn):
    """Telemetry never fails the request or task it observes."""
    def wrapper(**kwargs):
        if _metrics is None:
            return
        try:
            fn(_metrics, **kwargs)
        except Exception:
            log.warning("telemetry failed; the request is unaffected", exc_info=True)

    return wrapper


@_safe
def approval_opened(m: ControlPlaneTelemetry, *, organization_id: int) -> None:
    if m.metered:
        m.opened.add(1, {"cordum.org_id": str(organization_id)})


@_safe
def approval_closed(m: ControlPlaneTelemetry, *, approval: Any) -> None:
    """A request left `pending` (approved, denied, expired or cancelled): counted, its wait measured, and one
    span from request to decision whose `cordum.decision_id` is the sidecar's span's."""
    created: dt.datetime = approval.created_at
    decided: dt.datetime = approval.decided_at or created
    seconds = max(0.0, (decided - created).total_seconds())
    attrs = {"cordum.org_id": str(approval.organization_id), "cordum.state": str(approval.state)}
    if m.metered:
        m.decided.add(1, attrs)
        m.time_to_decision.record(seconds, attrs)
    if m.tracer is not None:
        span = m.tracer.start_span("cordum.approval", start_time=int(created.timestamp() * 1e9), attributes={
            **attrs, "cordum.decision_id": approval.decision_id, "cordum.tool": approval.tool,
            "cordum.action": approval.action, "cordum.target": approval.target, "cordum.rule": approval.rule,
            "cordum.policy_version": approval.policy_version, "cordum.agent": approval.agent.name})
        span.end(end_time=int(decided.timestamp() * 1e9))


@_safe
def evidence_received(m: ControlPlaneTelemetry, *, organization_id: int, records: int, new: int) -> None:
    if m.metered:
        org = str(organization_id)
        if new:
            m.received.add(new, {"cordum.org_id": org, "new": True})
        if records - new:
            m.received.add(records - new, {"cordum.org_id": org, "new": False})


@_safe
def evidence_chained(m: ControlPlaneTelemetry, *, organization_id: int, records: int) -> None:
    if m.metered and records:
        m.chained.add(records, {"cordum.org_id": str(organization_id)})


@_safe
def evidence_quarantined(m: ControlPlaneTelemetry, *, organization_id: int) -> None:
    if m.metered:
        m.quarantined.add(1, {"cordum.org_id": str(organization_id)})
