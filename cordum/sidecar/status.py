"""`cordum-sidecar status`: what this machine's sidecar enforces and how much evidence waits to be uploaded."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from cordum.sidecar import __version__
from cordum.sidecar.config import SidecarConfig
from cordum.sidecar.enforcer import PolicyLoadError, load_local_policy
from cordum.sidecar.spool import Spool
from cordum.sidecar.telemetry import OTLP_ENDPOINT_VARS, TelemetrySettings, otlp_wanted


def telemetry_status(settings: TelemetrySettings) -> dict[str, Any]:
    """What a sidecar started here would export: sidecar.yaml's `telemetry:` with this environment applied."""
    settings = settings.with_environment()
    wanted = otlp_wanted(settings.otlp)
    endpoint = next((os.environ[v] for v in OTLP_ENDPOINT_VARS if os.environ.get(v)), None)
    return {"otlp": wanted, "otlp_endpoint": (endpoint or "http://localhost:4318") if wanted else None,
            "prometheus": settings.prometheus}


def _backlog(oldest: str | None) -> dict[str, Any]:
    """How long the oldest unsent record has waited: a growing age means uploads are failing or too slow."""
    if oldest is None:
        return {"backlog_oldest_at": None, "backlog_age_seconds": 0}
    try:
        age = (datetime.now(UTC) - datetime.fromisoformat(oldest.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return {"backlog_oldest_at": oldest, "backlog_age_seconds": None}
    return {"backlog_oldest_at": oldest, "backlog_age_seconds": max(0, round(age))}


def status_report(cfg: SidecarConfig, *, local_bundle: str | None = None) -> dict[str, Any]:
    spool = Spool(cfg.spool_path, recover=False)
    try:
        report: dict[str, Any] = {
            "version": __version__,
            "sidecar_id": cfg.sidecar_id or spool.sidecar_id(),
            "agent": cfg.agent,
            "environment": cfg.environment,
            "control_plane": cfg.control_plane,
            "mode": "online" if cfg.control_plane and not local_bundle else "offline",
            "spool": str(cfg.spool_path),
            "spool_depth": spool.depth(),
            "spool_rejected": spool.rejected(),
            "last_upload_at": spool.get_meta("last_upload_at"),
            **_backlog(spool.oldest_waiting_at()),
            "upstreams": [u.name for u in cfg.upstreams],
            "telemetry": telemetry_status(cfg.telemetry),
        }
    finally:
        spool.close()
    bundle_file = local_bundle or (cfg.bundle if not cfg.control_plane else None)
    if bundle_file:
        try:
            loaded = load_local_policy(bundle_file, trusted_keys=cfg.trusted_keys)
            report.update(bundle_version=loaded.version, bundle_sequence=loaded.sequence, bundle_source=bundle_file)
        except PolicyLoadError as exc:
            report.update(bundle_version=None, bundle_error=str(exc))
    else:
        from cordum.sidecar.bundles import BundleError, BundleStore, KeyStore, bundle_verify

        stored = BundleStore(cfg.bundle_store_path).load()
        if stored is None:
            report.update(bundle_version=None, bundle_error="no bundle received yet (every call is denied)")
        else:
            try:
                bundle_verify(stored, KeyStore(cfg.key_store_path).trusted(cfg.trusted_keys))
                manifest = stored["manifest"]
                report.update(bundle_version=manifest.get("version"), bundle_sequence=manifest.get("sequence"),
                              bundle_source=str(cfg.bundle_store_path))
            except BundleError as exc:
                report.update(bundle_version=None, bundle_error=f"stored bundle refused: {exc}")
    return report
