"""Fleet health in Prometheus form (GET /metrics): sidecars reporting or gone quiet, and the evidence their
spools still hold, from each sidecar's latest heartbeat."""

from __future__ import annotations

from django.utils import timezone

from cordum.rollouts.models import SidecarInstance


def collect():
    from prometheus_client.core import GaugeMetricFamily

    sidecars = GaugeMetricFamily("cordum_fleet_sidecars", "Sidecars by heartbeat state: reporting, or stale "
                                 "(three intervals without a heartbeat).", labels=["org", "state"])
    spool = GaugeMetricFamily("cordum_fleet_spool_depth", "Evidence records waiting in the spools of reporting "
                              "sidecars.", labels=["org"])
    now = timezone.now()
    counts: dict[tuple[str, str], int] = {}
    depth: dict[str, int] = {}
    for instance in SidecarInstance.objects.select_related("organization").only(
            "organization__slug", "last_seen_at", "interval_seconds", "spool_depth").iterator(chunk_size=2000):
        org = instance.organization.slug
        state = "stale" if instance.is_stale(now) else "reporting"
        counts[(org, state)] = counts.get((org, state), 0) + 1
        if state == "reporting":
            depth[org] = depth.get(org, 0) + instance.spool_depth
    for (org, state), n in sorted(counts.items()):
        sidecars.add_metric([org, state], n)
    for org, n in sorted(depth.items()):
        spool.add_metric([org], n)
    yield from (sidecars, spool)
