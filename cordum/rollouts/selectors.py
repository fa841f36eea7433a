"""Reads for the fleet and rollouts."""

from collections import Counter
from dataclasses import dataclass, field

from django.utils import timezone

from cordum.accounts.models import Organization
from cordum.rollouts.models import SidecarInstance


@dataclass(frozen=True)
class FleetRow:
    sidecar: SidecarInstance
    expected_version: str
    is_stale: bool
    is_old_version: bool


@dataclass(frozen=True)
class FleetSummary:
    target_version: str
    on_target: int  # live (not stale) sidecars enforcing target_version
    live: int
    stale: int
    total: int
    by_version: dict = field(default_factory=dict)  # {version: live sidecars enforcing it}

    @property
    def text(self) -> str:
        if not self.target_version:
            return f"{self.live} of {self.total} sidecars reporting; no policy published yet"
        return f"{self.on_target} of {self.live} sidecars enforce {self.target_version}"


def sidecar_list(*, organization: Organization, filters: dict | None = None):
    qs = SidecarInstance.objects.filter(organization=organization).select_related("agent", "agent__team")
    filters = filters or {}
    if filters.get("team"):
        qs = qs.filter(agent__team__slug=filters["team"])
    if filters.get("agent"):
        qs = qs.filter(agent__name=filters["agent"])
    return qs.order_by("agent__name", "sidecar_id")


def _expected_versions(*, organization: Organization, agents) -> dict[int, str]:
    """{agent_id: version string the control plane currently assigns it} ("" when nothing is published)."""
    from cordum.rollouts.assignment import assigned_versions

    return assigned_versions(organization=organization, agents=agents)


def fleet_rows(*, organization: Organization, filters: dict | None = None, now=None) -> list[FleetRow]:
    now = now or timezone.now()
    sidecars = list(sidecar_list(organization=organization, filters=filters))
    expected = _expected_versions(organization=organization, agents={s.agent for s in sidecars})
    rows = []
    for s in sidecars:
        want = expected.get(s.agent_id, "")
        rows.append(FleetRow(
            sidecar=s, expected_version=want, is_stale=s.is_stale(now),
            is_old_version=bool(want) and s.bundle_version != want,
        ))
    return rows


def fleet_summary(*, organization: Organization, rows: list[FleetRow] | None = None, now=None) -> FleetSummary:
    from cordum.rollouts.assignment import target_version

    rows = rows if rows is not None else fleet_rows(organization=organization, now=now)
    target = target_version(organization=organization)
    live = [r for r in rows if not r.is_stale]
    return FleetSummary(
        target_version=target,
        on_target=sum(1 for r in live if target and r.sidecar.bundle_version == target),
        live=len(live),
        stale=len(rows) - len(live),
        total=len(rows),
        by_version=dict(Counter(r.sidecar.bundle_version or "none" for r in live).most_common()),
    )
