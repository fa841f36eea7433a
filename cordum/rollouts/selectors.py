"""Reads for the fleet and rollouts."""

from collections import Counter
from dataclasses import dataclass, field

from django.utils import timezone

from cordum.accounts.models import Organization
from cordum.common.errors import NotFound
from cordum.rollouts.choices import GuardrailState, RolloutState
from cordum.rollouts.models import ACTIVE_STATES, UNFINISHED_STATES, Rollout, RolloutPlan, SidecarInstance


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


# --- rollouts ---------------------------------------------------------------------------------
_RANK = {"allow": 0, "require_approval": 1, "deny": 2}
_SHADOW_SCAN_LIMIT = 200_000


def rollout_list(*, organization: Organization, filters: dict | None = None):
    qs = Rollout.objects.filter(organization=organization).select_related(
        "repository", "from_version", "to_version", "from_bundle", "to_bundle")
    filters = filters or {}
    if filters.get("state"):
        qs = qs.filter(state=filters["state"])
    if filters.get("repository"):
        qs = qs.filter(repository_id=filters["repository"])
    return qs.order_by("-created_at", "-id")


def rollout_get(*, organization: Organization, pk) -> Rollout:
    rollout = rollout_list(organization=organization).filter(pk=pk).first()
    if rollout is None:
        raise NotFound("No such rollout in this organisation.")
    return rollout


def rollout_plan_get(*, repository) -> RolloutPlan | None:
    return RolloutPlan.objects.filter(repository=repository).first()


def _restricted(decision: str) -> bool:
    return decision in ("deny", "require_approval")


def decision_rates(*, organization_id: int, since, until=None, from_version: str, to_version: str) -> dict:
    """Observed decision rates in a time window, from evidence.

    - enforced: share of calls denied or approval-gated under each version (delta = to - from);
    - shadow: among calls enforced by `from_version` that also carry a shadow decision of `to_version`,
      the share the new version would have newly denied or gated.
    """
    from django.db.models import Count, Q

    from cordum.decisions.models import EvidenceRecord

    base = EvidenceRecord.objects.filter(organization_id=organization_id, record_type="decision",
                                         timestamp__gte=since)
    if until is not None:
        base = base.filter(timestamp__lt=until)
    restricted = Q(decision__in=("deny", "require_approval"))
    rows = base.filter(policy_version__in=(from_version, to_version)).values("policy_version").annotate(
        total=Count("id"), restricted=Count("id", filter=restricted),
        denied=Count("id", filter=Q(decision="deny")))
    by_version = {r["policy_version"]: r for r in rows}

    def _rate(version):
        r = by_version.get(version)
        return {"calls": r["total"] if r else 0, "restricted": r["restricted"] if r else 0,
                "denied": r["denied"] if r else 0,
                "rate": (r["restricted"] / r["total"]) if r and r["total"] else None}

    old, new = _rate(from_version), _rate(to_version)
    delta = (new["rate"] - old["rate"]) if new["rate"] is not None and old["rate"] is not None else None

    shadow_calls = newly = newly_denied = 0
    scan = base.filter(policy_version=from_version)
    from django.db import connection

    if connection.vendor == "postgresql":
        scan = scan.filter(shadow__contains=[{"policy_version": to_version}])
    for decision, shadow in scan.values_list("decision", "shadow")[:_SHADOW_SCAN_LIMIT]:
        entries = [e for e in (shadow or []) if isinstance(e, dict) and e.get("policy_version") == to_version]
        if not entries:
            continue
        shadow_calls += 1
        would = entries[-1].get("decision") or ""
        if _RANK.get(would, 0) > _RANK.get(decision, 0):
            newly += 1
            newly_denied += would == "deny"
    return {
        "from": old, "to": new, "enforced_delta": delta,
        "shadow": {"calls": shadow_calls, "newly_restricted": newly, "newly_denied": newly_denied,
                   "rate": (newly / shadow_calls) if shadow_calls else None},
    }


def simulation_forecast(*, rollout: Rollout) -> dict | None:
    """The newest completed simulation of the candidate: its share of calls that tighten."""
    try:
        from cordum.simulation.models import Simulation
    except ImportError:  # pragma: no cover
        return None
    sim = (Simulation.objects.filter(organization_id=rollout.organization_id,
                                     candidate_version_id=rollout.to_version_id, status="completed")
           .exclude(report=None).order_by("-finished_at", "-id").first())
    if sim is None:
        return None
    summary = (sim.report or {}).get("summary") or {}
    total = summary.get("total_calls") or 0
    if not total:
        return None
    tightened = summary.get("tightened")
    if tightened is None:
        tightened = (summary.get("newly_denied") or 0) + (summary.get("newly_require_approval") or 0)
    return {"simulation": sim.pk, "rate": tightened / total, "total_calls": total, "tightened": tightened}


def rollout_guardrail_check(*, rollout: Rollout, now=None, since=None, until=None) -> dict:
    """Observed rate of newly denied/gated calls in the current stage vs the thresholds."""
    now = now or timezone.now()
    since = since or rollout.stage_started_at or rollout.started_at or rollout.created_at
    rates = decision_rates(organization_id=rollout.organization_id, since=since, until=until,
                           from_version=rollout.from_version.version, to_version=rollout.to_version.version)
    observations = []
    if rates["shadow"]["calls"] >= rollout.min_calls and rates["shadow"]["rate"] is not None:
        observations.append(("shadow", rates["shadow"]["rate"]))
    if (rates["enforced_delta"] is not None and rates["to"]["calls"] >= rollout.min_calls
            and rates["from"]["calls"] >= rollout.min_calls):
        observations.append(("enforced", max(0.0, rates["enforced_delta"])))
    forecast = simulation_forecast(rollout=rollout)
    result = {"checked_at": now.isoformat(), "since": since.isoformat(), "rates": rates,
              "threshold": rollout.max_new_restriction_rate, "forecast": forecast,
              "forecast_margin": rollout.forecast_margin, "observed_rate": None, "source": None,
              "state": GuardrailState.INSUFFICIENT, "reason": ""}
    if not observations:
        result["reason"] = f"fewer than {rollout.min_calls} calls observed in this stage"
        return result
    source, observed = max(observations, key=lambda o: o[1])
    result.update(observed_rate=observed, source=source, state=GuardrailState.OK)
    if observed > rollout.max_new_restriction_rate:
        result.update(state=GuardrailState.BREACHED, reason=(
            f"{observed:.1%} of calls newly denied or approval-gated ({source}) exceeds the threshold "
            f"{rollout.max_new_restriction_rate:.1%}"))
    elif forecast is not None and observed > forecast["rate"] + rollout.forecast_margin:
        result.update(state=GuardrailState.BREACHED, reason=(
            f"{observed:.1%} of calls newly denied or approval-gated ({source}) exceeds the simulation forecast "
            f"{forecast['rate']:.1%} by more than {rollout.forecast_margin:.1%}"))
    return result


@dataclass(frozen=True)
class StageView:
    index: int
    stage: dict
    status: str  # done | current | next
    started_at: object = None
    ended_at: object = None
    rates: dict | None = None


def rollout_stage_views(*, rollout: Rollout, with_rates: bool = True) -> list[StageView]:
    """Every stage with its time window (from the history) and the decision rates observed in it."""
    starts: dict[int, object] = {}
    ends: dict[int, object] = {}
    for event in rollout.events.all():
        if event.to_stage is not None and event.to_stage >= 0 and event.action in ("start", "promote", "resume"):
            if event.to_stage != event.from_stage or event.to_stage not in starts:
                starts[event.to_stage] = event.created_at
            if event.from_stage is not None and event.from_stage >= 0 and event.from_stage != event.to_stage:
                ends[event.from_stage] = event.created_at
    out = []
    for index, stage in enumerate(rollout.stages):
        if index < rollout.stage_index or (rollout.state == RolloutState.COMPLETED and index == rollout.stage_index):
            status = "done"
        elif index == rollout.stage_index and rollout.state not in (RolloutState.PENDING,):
            status = "current"
        else:
            status = "next"
        started, ended = starts.get(index), ends.get(index) or (rollout.finished_at if status != "next" else None)
        rates = None
        if with_rates and started is not None:
            rates = decision_rates(organization_id=rollout.organization_id, since=started, until=ended,
                                   from_version=rollout.from_version.version, to_version=rollout.to_version.version)
        out.append(StageView(index=index, stage=stage, status=status, started_at=started, ended_at=ended,
                             rates=rates))
    return out


def rollout_agents(*, rollout: Rollout) -> list[dict]:
    """Who is on which version: per agent, what the current stage assigns and what its sidecars report."""
    from cordum.accounts.models import Agent
    from cordum.rollouts.assignment import stage_assignment

    agents = Agent.objects.filter(organization_id=rollout.organization_id, is_active=True).select_related("team")
    sidecars: dict[int, list[SidecarInstance]] = {}
    for s in SidecarInstance.objects.filter(organization_id=rollout.organization_id):
        sidecars.setdefault(s.agent_id, []).append(s)
    active = rollout.is_active
    out = []
    for agent in agents:
        if active:
            enforce, shadow = stage_assignment(rollout.stages, rollout.stage_index, agent)
        else:
            enforce, shadow = rollout.state == RolloutState.COMPLETED, False
        out.append({
            "agent": agent, "enforces_new": enforce, "shadows_new": shadow,
            "assigned": rollout.to_version.version if enforce else rollout.from_version.version,
            "sidecars": sidecars.get(agent.pk, []),
        })
    return out


def rollout_rollback_refusal(*, rollout: Rollout) -> str | None:
    """Why `rollout` cannot be rolled back now, or None: active ones always can, a completed one while the
    fleet's baseline is still its version and no other rollout is under way."""
    from cordum.rollouts.assignment import baseline_bundle

    if rollout.state in ACTIVE_STATES:
        return None
    if rollout.state != RolloutState.COMPLETED:
        return f"Cannot roll back a rollout that is {rollout.get_state_display().lower()}."
    if Rollout.objects.filter(organization_id=rollout.organization_id, state__in=UNFINISHED_STATES).exists():
        return "Another rollout is under way: roll that one back instead."
    baseline = baseline_bundle(organization_id=rollout.organization_id)
    if baseline is None or baseline.version_id != rollout.to_version_id:
        current = baseline.version.version if baseline is not None else "nothing"
        return (f"The fleet has moved on to {current} since this rollout completed: roll back the newer version, "
                "or revert the commit in git.")
    return None
