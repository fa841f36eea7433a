"""Writes for the fleet and rollouts."""

from django.db import transaction
from django.utils import timezone

from cordum.accounts.models import Agent
from cordum.rollouts.models import SidecarInstance

_COUNTER_KEYS = ("allow", "deny", "require_approval", "errors")


# --- fleet ------------------------------------------------------------------------------------
@transaction.atomic
def sidecar_heartbeat_record(*, agent: Agent, data: dict, now=None) -> SidecarInstance:
    """Store the latest status of one sidecar (keyed by sidecar_id within the agent's organisation)."""
    now = now or timezone.now()
    counters = {k: int(v) for k, v in (data.get("counters") or {}).items() if k in _COUNTER_KEYS}
    values = {
        "agent": agent,
        "hostname": data.get("hostname") or "",
        "software_version": data.get("version") or "",
        "bundle_version": data.get("bundle_version") or "",
        "bundle_sequence": data.get("bundle_sequence"),
        "shadow_version": data.get("shadow_version") or "",
        "spool_depth": data.get("spool_depth") or 0,
        "last_upload_at": data.get("last_upload_at"),
        "counters": counters,
        "interval_seconds": data.get("interval_seconds") or 15,
        "last_seen_at": now,
    }
    instance, _ = SidecarInstance.objects.update_or_create(
        organization_id=agent.organization_id, sidecar_id=data["sidecar_id"], defaults=values,
        create_defaults={**values, "first_seen_at": now},
    )
    Agent.objects.filter(pk=agent.pk).update(last_seen_at=now)
    return instance
