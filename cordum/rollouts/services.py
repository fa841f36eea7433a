"""Writes for the fleet and rollouts."""

import contextvars
import logging
import math

from django.db import transaction
from django.utils import timezone

from cordum.accounts.choices import AuditAction
from cordum.accounts.models import Agent
from cordum.accounts.services import audit_log_record, snapshot
from cordum.common import notify
from cordum.common.errors import Conflict, CordumError
from cordum.rollouts.choices import GuardrailState, RolloutAction, RolloutState, StageKind
from cordum.rollouts.models import UNFINISHED_STATES, Rollout, RolloutEvent, RolloutPlan, SidecarInstance

_COUNTER_KEYS = ("allow", "deny", "require_approval", "errors")


# --- fleet ------------------------------------------------------------------------------------
def fleet_channel(organization_id: int) -> str:
    """notify channel announcing each heartbeat of the organisation's sidecars."""
    return f"fleet:{organization_id}"


@transaction.atomic
def sidecar_heartbeat_record(*, agent: Agent, data: dict, now=None) -> SidecarInstance:
    """Store the latest status of one sidecar (keyed by sidecar_id within the agent's organisation)."""
    now = now or timezone.now()
    interval = data.get("interval_seconds")
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
        "interval_seconds": max(1, math.ceil(15 if interval is None else interval)),
        "last_seen_at": now,
    }
    instance, _ = SidecarInstance.objects.update_or_create(
        organization_id=agent.organization_id, sidecar_id=data["sidecar_id"], defaults=values,
        create_defaults={**values, "first_seen_at": now},
    )
    Agent.objects.filter(pk=agent.pk).update(last_seen_at=now)
    org_id, sidecar_id = agent.organization_id, instance.sidecar_id
    transaction.on_commit(lambda: notify.publish(fleet_channel(org_id), sidecar_id))
    return instance


# --- rollouts ---------------------------------------------------------------------------------
log = logging.getLogger(__name__)
_internal_publish: contextvars.ContextVar[bool] = contextvars.ContextVar("rollouts_internal_publish", default=False)


def _notify_fleet(organization_id: int) -> None:
    """Wake every long-polling sidecar of the organisation once the transaction commits."""
    from cordum.policies.services import bundle_channel

    transaction.on_commit(lambda: notify.publish(bundle_channel(organization_id), "rollout"))


def _publish(*, version, rollback: bool = False):
    """Publish a bundle of `version` from inside this app (the publish hook ignores it)."""
    from cordum.policies.services import bundle_publish

    token = _internal_publish.set(True)
    try:
        return bundle_publish(version=version, rollback=rollback)
    finally:
        _internal_publish.reset(token)


def _state(rollout: Rollout) -> dict:
    return {"state": rollout.state, "stage": rollout.stage_index,
            "stage_name": (rollout.stage or {}).get("name", ""),
            "from_version": rollout.from_version.version, "to_version": rollout.to_version.version}


def _record(rollout: Rollout, *, action: str, actor=None, before: dict | None = None, message: str = "",
            data: dict | None = None, from_stage: int | None = None) -> RolloutEvent:
    """History row plus the admin audit log entry for one rollout action."""
    person = actor if getattr(actor, "pk", None) else None
    actor_name = (getattr(person, "email", "") or getattr(person, "username", "")) if person else "system"
    event = RolloutEvent.objects.create(
        rollout=rollout, action=action, actor=person, actor_name=actor_name or "system",
        from_stage=from_stage, to_stage=rollout.stage_index, message=message, data=data or {},
    )
    audit_log_record(organization=rollout.organization, actor=person, action=AuditAction.ACTION, obj=rollout,
                     before=before, after={**_state(rollout), "action": action, "message": message})
    return event


def validate_stages(stages) -> list[dict]:
    """Normalised stage list, or CordumError naming the offending field."""
    if not isinstance(stages, list) or not stages:
        raise CordumError("Invalid input: stages: give at least one stage.", {"field": "stages"})
    out = []
    for i, raw in enumerate(stages):
        where = f"stages[{i}]"
        if not isinstance(raw, dict):
            raise CordumError(f"Invalid input: {where}: must be an object.", {"field": where})
        kind = raw.get("kind")
        if kind not in StageKind.values:
            raise CordumError(f"Invalid input: {where}.kind: must be one of {', '.join(StageKind.values)}.",
                              {"field": f"{where}.kind"})
        stage = {"name": str(raw.get("name") or kind), "kind": kind}
        try:
            stage["min_soak_seconds"] = int(raw.get("min_soak_seconds", 0) or 0)
            percent = int(raw.get("percent", 0) or 0)
        except (TypeError, ValueError):
            raise CordumError(f"Invalid input: {where}: min_soak_seconds and percent must be integers.",
                              {"field": where}) from None
        if stage["min_soak_seconds"] < 0:
            raise CordumError(f"Invalid input: {where}.min_soak_seconds: must be >= 0.",
                              {"field": f"{where}.min_soak_seconds"})
        if kind == StageKind.CANARY:
            if not 0 <= percent <= 100:
                raise CordumError(f"Invalid input: {where}.percent: must be between 0 and 100.",
                                  {"field": f"{where}.percent"})
            teams = [str(t) for t in raw.get("teams") or []]
            agents = [str(a) for a in raw.get("agents") or []]
            if not (teams or agents or percent):
                raise CordumError(f"Invalid input: {where}: a canary stage needs teams, agents or a percent.",
                                  {"field": where})
            stage.update(teams=teams, agents=agents, percent=percent)
        out.append(stage)
    if out[-1]["kind"] != StageKind.ALL:
        raise CordumError("Invalid input: stages: the last stage must enforce for all.", {"field": "stages"})
    return out


@transaction.atomic
def rollout_plan_set(*, repository, actor, **fields) -> RolloutPlan:
    """Create or update the repository's rollout plan (audited)."""
    plan = RolloutPlan.objects.filter(repository=repository).first()
    before = snapshot(plan) if plan else None
    if "stages" in fields:
        fields["stages"] = validate_stages(fields["stages"])
    for name in ("max_new_restriction_rate", "forecast_margin"):
        if name in fields and not 0 <= float(fields[name]) <= 1:
            raise CordumError(f"Invalid input: {name}: must be between 0 and 1.", {"field": name})
    plan = plan or RolloutPlan(repository=repository)
    for key, value in fields.items():
        setattr(plan, key, value)
    plan.save()
    audit_log_record(organization=repository.organization, actor=actor,
                     action=AuditAction.UPDATE if before else AuditAction.CREATE, obj=plan,
                     before=before, after=snapshot(plan))
    return plan


def _baseline_before(bundle):
    from cordum.rollouts.assignment import baseline_bundle

    return baseline_bundle(organization_id=bundle.organization_id, before_sequence=bundle.sequence)


@transaction.atomic
def bundle_published(*, bundle) -> Rollout | None:
    """Hook: the policies app published `bundle`. Start (or queue) a rollout by the repository's plan.

    - a re-signed bundle of a version being rolled out replaces the candidate's bundle;
    - a rollback published by git (live branch moved back) ends unfinished rollouts: everyone takes it;
    - a new version with a plan gets a rollout from the current baseline; without a plan it goes to everyone.
    """
    if _internal_publish.get():
        return None
    org_id = bundle.organization_id
    unfinished = list(Rollout.objects.select_for_update().filter(
        organization_id=org_id, state__in=UNFINISHED_STATES))
    for rollout in unfinished:
        if rollout.to_version_id == bundle.version_id and not bundle.rollback:
            rollout.to_bundles.add(bundle)
            Rollout.objects.filter(pk=rollout.pk).update(to_bundle=bundle)
            return rollout
    moved = None  # an in-flight rollout that may have moved agents to its candidate
    for rollout in unfinished:  # a different version supersedes whatever was in flight
        before = _state(rollout)
        if rollout.is_active:
            moved = rollout
        rollout.state = RolloutState.SUPERSEDED
        rollout.finished_at = timezone.now()
        rollout.save(update_fields=["state", "finished_at"])
        reason = (f"the live branch moved back to {bundle.version.version}" if bundle.rollback
                  else f"{bundle.version.version} went live before this rollout finished")
        _record(rollout, action=RolloutAction.SUPERSEDE, before=before, message=f"Superseded: {reason}.")
    plan = RolloutPlan.objects.filter(repository_id=bundle.repository_id).first()
    if bundle.rollback or plan is None:
        if unfinished:
            _notify_fleet(org_id)
        return None
    if moved is not None:
        # Agents that already enforce the abandoned candidate go back to its baseline first; a fresh
        # bundle (higher sequence, rollback flag) is the only way a sidecar accepts the older version.
        from_bundle = _publish(version=moved.from_version, rollback=True)
    else:
        from_bundle = _baseline_before(bundle)
    if from_bundle is None or from_bundle.version_id == bundle.version_id:
        return None  # the first version of an organisation (or the same one again) needs no rollout
    rollout = Rollout.objects.create(
        organization_id=org_id, repository_id=bundle.repository_id, from_version=from_bundle.version,
        to_version=bundle.version, from_bundle=from_bundle, to_bundle=bundle, stages=plan.stages,
        max_new_restriction_rate=plan.max_new_restriction_rate, forecast_margin=plan.forecast_margin,
        min_calls=plan.min_calls, auto_promote=plan.auto_promote,
    )
    rollout.to_bundles.add(bundle)
    _record(rollout, action=RolloutAction.CREATE,
            message=f"{bundle.version.version} went live; rollout by plan ({len(plan.stages)} stages).")
    if plan.auto_start:
        rollout_start(rollout=rollout, actor=None)
    return rollout


def _lock(rollout: Rollout) -> Rollout:
    return Rollout.objects.select_for_update().select_related(
        "organization", "from_version", "to_version", "from_bundle", "to_bundle").get(pk=rollout.pk)


def _require(rollout: Rollout, states, verb: str) -> None:
    if rollout.state not in states:
        raise Conflict(f"Cannot {verb} a rollout that is {rollout.get_state_display().lower()}.",
                       {"state": rollout.state})


@transaction.atomic
def rollout_start(*, rollout: Rollout, actor) -> Rollout:
    from cordum.rollouts.assignment import active_rollout, baseline_bundle

    rollout = _lock(rollout)
    _require(rollout, (RolloutState.PENDING,), "start")
    other = active_rollout(organization_id=rollout.organization_id)
    if other is not None and other.pk != rollout.pk:
        raise Conflict(f"Rollout #{other.pk} is still in progress; finish or roll it back first.",
                       {"rollout": other.pk})
    before = _state(rollout)
    baseline = baseline_bundle(organization_id=rollout.organization_id)
    if baseline is not None and baseline.pk != rollout.from_bundle_id:
        rollout.from_bundle, rollout.from_version = baseline, baseline.version
    if rollout.to_bundle.sequence <= rollout.from_bundle.sequence:
        # The candidate is older than what the fleet holds (e.g. after a rollback): sidecars refuse lower
        # sequences, so issue it again with the next one.
        fresh = _publish(version=rollout.to_version)
        rollout.to_bundles.add(fresh)
        rollout.to_bundle = fresh
    now = timezone.now()
    rollout.state, rollout.stage_index, rollout.stage_started_at, rollout.started_at = (
        RolloutState.RUNNING, 0, now, now)
    rollout.save()
    _record(rollout, action=RolloutAction.START, actor=actor, before=before, from_stage=-1,
            message=f"Stage 1: {rollout.stage['name']}.")
    _notify_fleet(rollout.organization_id)
    if rollout.is_last_stage and not rollout.stage.get("min_soak_seconds"):
        _complete(rollout, actor=actor)
    return rollout


def _complete(rollout: Rollout, *, actor) -> None:
    before = _state(rollout)
    rollout.state, rollout.finished_at = RolloutState.COMPLETED, timezone.now()
    rollout.save(update_fields=["state", "finished_at"])
    _record(rollout, action=RolloutAction.COMPLETE, actor=actor, before=before,
            message=f"Everyone enforces {rollout.to_version.version}.")
    _notify_fleet(rollout.organization_id)
    _start_next(rollout.organization_id)


def _start_next(organization_id: int) -> None:
    """A queued rollout (newest pending) starts when the previous one ends, if its plan says auto-start."""
    pending = Rollout.objects.filter(organization_id=organization_id, state=RolloutState.PENDING).order_by(
        "-created_at", "-id").first()
    if pending is None:
        return
    plan = RolloutPlan.objects.filter(repository_id=pending.repository_id).first()
    if plan is not None and plan.auto_start:
        rollout_start(rollout=pending, actor=None)


@transaction.atomic
def rollout_promote(*, rollout: Rollout, actor, force: bool = False) -> Rollout:
    """Move to the next stage (or complete at the last). Before the soak time has passed only with force."""
    rollout = _lock(rollout)
    _require(rollout, (RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.HALTED), "promote")
    remaining = rollout.soak_remaining()
    if remaining > 0 and not force:
        raise Conflict(f"Stage {rollout.stage['name']!r} has {int(remaining)} s of soak time left; "
                       "promote with force to skip it.", {"soak_remaining_seconds": int(remaining)})
    if rollout.is_last_stage:
        _complete(rollout, actor=actor)
        return rollout
    before = _state(rollout)
    previous = rollout.stage_index
    rollout.stage_index += 1
    rollout.stage_started_at = timezone.now()
    rollout.state = RolloutState.RUNNING
    rollout.halted_reason = ""
    rollout.guardrail = {}
    rollout.save()
    _record(rollout, action=RolloutAction.PROMOTE, actor=actor, before=before, from_stage=previous,
            message=f"Stage {rollout.stage_index + 1}: {rollout.stage['name']}" + (" (soak skipped)" if remaining else ""))
    _notify_fleet(rollout.organization_id)
    if rollout.is_last_stage and not rollout.stage.get("min_soak_seconds"):
        _complete(rollout, actor=actor)
    return rollout


@transaction.atomic
def rollout_pause(*, rollout: Rollout, actor) -> Rollout:
    rollout = _lock(rollout)
    _require(rollout, (RolloutState.RUNNING,), "pause")
    before = _state(rollout)
    rollout.state = RolloutState.PAUSED
    rollout.save(update_fields=["state"])
    _record(rollout, action=RolloutAction.PAUSE, actor=actor, before=before, from_stage=rollout.stage_index,
            message="Paused: no automatic promotion; agents stay where they are.")
    return rollout


@transaction.atomic
def rollout_resume(*, rollout: Rollout, actor) -> Rollout:
    """Resume a paused or halted rollout; the stage's soak and guardrail window start again."""
    rollout = _lock(rollout)
    _require(rollout, (RolloutState.PAUSED, RolloutState.HALTED), "resume")
    before = _state(rollout)
    rollout.state = RolloutState.RUNNING
    rollout.stage_started_at = timezone.now()
    rollout.halted_reason = ""
    rollout.guardrail = {}
    rollout.save()
    _record(rollout, action=RolloutAction.RESUME, actor=actor, before=before, from_stage=rollout.stage_index,
            message="Resumed; the stage's soak time and guardrail window restart now.")
    return rollout


@transaction.atomic
def rollout_halt(*, rollout: Rollout, reason: str, guardrail: dict | None = None) -> Rollout:
    rollout = _lock(rollout)
    _require(rollout, (RolloutState.RUNNING,), "halt")
    before = _state(rollout)
    rollout.state = RolloutState.HALTED
    rollout.halted_reason = reason
    if guardrail is not None:
        rollout.guardrail = guardrail
    rollout.save()
    _record(rollout, action=RolloutAction.HALT, before=before, from_stage=rollout.stage_index,
            message=f"Halted by guardrail: {reason}", data=guardrail or {})
    return rollout


@transaction.atomic
def rollout_rollback(*, rollout: Rollout, actor, reason: str = "") -> Rollout:
    """Everyone back to the previous version now: a new bundle of it with `rollback: true`.

    A completed rollout can be rolled back too, while its version is still what the fleet enforces
    (a regression found after 100 %); git keeps the newer commit live until it is reverted there.
    """
    from cordum.rollouts.selectors import rollout_rollback_refusal

    rollout = _lock(rollout)
    refusal = rollout_rollback_refusal(rollout=rollout)
    if refusal:
        raise Conflict(refusal, {"state": rollout.state})
    before = _state(rollout)
    bundle = _publish(version=rollout.from_version, rollback=True)
    rollout.rollback_bundle = bundle
    rollout.state, rollout.finished_at = RolloutState.ROLLED_BACK, timezone.now()
    rollout.save()
    _record(rollout, action=RolloutAction.ROLLBACK, actor=actor, before=before, from_stage=rollout.stage_index,
            message=f"Rolled back to {rollout.from_version.version} (bundle #{bundle.sequence})"
                    + (f": {reason}" if reason else "."))
    _notify_fleet(rollout.organization_id)
    _start_next(rollout.organization_id)
    return rollout


def rollouts_check(*, now=None) -> dict:
    """Guardrails and soak times of every running rollout: halt on breach, promote/complete when due."""
    from cordum.rollouts.selectors import rollout_guardrail_check

    now = now or timezone.now()
    counts = {"checked": 0, "halted": 0, "promoted": 0, "completed": 0}
    for rollout_id in Rollout.objects.filter(state=RolloutState.RUNNING).values_list("pk", flat=True):
        rollout = Rollout.objects.select_related("from_version", "to_version", "organization").get(pk=rollout_id)
        result = rollout_guardrail_check(rollout=rollout, now=now)
        counts["checked"] += 1
        if result["state"] == GuardrailState.BREACHED:
            try:
                rollout_halt(rollout=rollout, reason=result["reason"], guardrail=result)
                counts["halted"] += 1
            except Conflict:
                pass
            continue
        Rollout.objects.filter(pk=rollout.pk, state=RolloutState.RUNNING).update(guardrail=result)
        if rollout.soak_remaining(now) > 0:
            continue
        try:
            if rollout.is_last_stage:
                rollout_promote(rollout=rollout, actor=None)
                counts["completed"] += 1
            elif rollout.auto_promote:
                rollout_promote(rollout=rollout, actor=None)
                counts["promoted"] += 1
        except Conflict:
            log.info("rollout %s changed while being checked", rollout.pk)
    return counts
