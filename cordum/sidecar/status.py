"""`cordum-sidecar status`: what this machine's sidecar enforces and how much evidence waits to be uploaded."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from cordum.sidecar import __version__
from cordum.sidecar.config import SidecarConfig
from cordum.sidecar.enforcer import PolicyLoadError, load_local_policy, policy_from_bundle
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


def pinning_status(cfg: SidecarConfig, policy: Any) -> dict[str, Any] | None:
    """What the lock in force pins, and how what the upstreams last listed (kept in the spool) differs from it."""
    from cordum.policy.toollock import ToolPins
    from cordum.sidecar.locking import LockError, listings_from_spool

    if policy.tools_lock is None:
        return None
    pins = ToolPins()
    pins.set_lock(policy.tools_lock)
    try:
        listings = listings_from_spool(cfg.spool_path)
    except LockError:
        listings = {}
    drifts = [d for server, tools in listings.items() for d in pins.observe(server, tools, complete=True)]
    return {"on_tool_drift": policy.on_tool_drift, "pinned_servers": [name for name, _ in policy.tools_lock.servers],
            "listed_servers": sorted(listings), "drifts": [d.describe() for d in drifts]}


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
            report["tool_pinning"] = pinning_status(cfg, loaded.compiled.policy)
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
                report["tool_pinning"] = pinning_status(cfg, policy_from_bundle(stored, source="status").compiled.policy)
            except (BundleError, PolicyLoadError) as exc:
                report.update(bundle_version=None, bundle_error=f"stored bundle refused: {exc}")
    return report
