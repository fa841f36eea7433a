"""Which policy bundle each agent should hold: the baseline, or what its rollout stage assigns.

The bundle API (`cordum.rollouts.api.views.BundleApi`, through `bundle_for_agent`) calls `rollout_selection` on every request
and every long-poll wake-up, so this module only reads a handful of rows.

- Baseline: the organisation's newest bundle that is not a candidate of an unfinished (or rolled back)
  rollout. Everyone enforces it unless a running/paused/halted rollout assigns them the new version.
- Stage assignment (deterministic): canary selections add up stage by stage (teams, agent names, and a
  percentage by a stable hash of the agent id, so an agent never flips back and forth); an `all` stage
  moves everyone; from the first `shadow` stage on, agents not enforcing the new version shadow it.
"""

import fnmatch
import hashlib
from dataclasses import dataclass

from cordum.accounts.models import Agent, Organization
from cordum.policies.models import PolicyBundle
from cordum.rollouts.choices import RolloutState, StageKind
from cordum.rollouts.models import ACTIVE_STATES, Rollout


def agent_bucket(agent_id: int) -> int:
    """0-99, stable for an agent: who falls into "N% of agents"."""
    digest = hashlib.sha256(f"cordum-rollout:{agent_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def _team_slug(agent: Agent) -> str:
    return agent.team.slug if agent.team_id and agent.team else ""


def in_canary(stage: dict, agent: Agent) -> bool:
    if stage.get("kind") == StageKind.ALL:
        return True
    if stage.get("kind") != StageKind.CANARY:
        return False
    team = _team_slug(agent)
    if team and team in (stage.get("teams") or []):
        return True
    if any(fnmatch.fnmatchcase(agent.name, pattern) for pattern in (stage.get("agents") or [])):
        return True
    percent = int(stage.get("percent") or 0)
    return percent > 0 and agent_bucket(agent.pk) < percent


def stage_assignment(stages: list[dict], stage_index: int, agent: Agent) -> tuple[bool, bool]:
    """(enforces the new version, shadows the new version) for an agent at stage `stage_index`."""
    reached = stages[: stage_index + 1] if stage_index >= 0 else []
    enforce = any(in_canary(stage, agent) for stage in reached)
    shadow = not enforce and any(stage.get("kind") == StageKind.SHADOW for stage in reached)
    return enforce, shadow


def active_rollout(*, organization_id: int) -> Rollout | None:
    return (
        Rollout.objects.filter(organization_id=organization_id, state__in=ACTIVE_STATES)
        .select_related("from_bundle", "to_bundle", "from_version", "to_version")
        .order_by("-created_at", "-id")
        .first()
    )


def baseline_bundle(*, organization_id: int, before_sequence: int | None = None):
    """The newest bundle everyone enforces outside a rollout (candidates of unfinished rollouts excluded)."""
    held_back = Rollout.to_bundles.through.objects.filter(
        rollout__organization_id=organization_id
    ).exclude(rollout__state=RolloutState.COMPLETED).values("policybundle_id")
    qs = PolicyBundle.objects.filter(organization_id=organization_id).exclude(pk__in=held_back)
    if before_sequence is not None:
        qs = qs.filter(sequence__lt=before_sequence)
    return qs.select_related("version").order_by("-sequence").first()


def rollout_selection(*, agent: Agent):
    """(bundle, shadow bundle or None) for `agent`, or None while its organisation has no bundle.

    Each step is one statement, so a rollout committed between them never leaks its candidate: the
    baseline query excludes held-back candidates in the same snapshot that shows the new bundle.
    """
    rollout = active_rollout(organization_id=agent.organization_id)
    if rollout is not None:
        enforce, shadow = stage_assignment(rollout.stages, rollout.stage_index, agent)
        if enforce:
            return rollout.to_bundle, None
        return rollout.from_bundle, (rollout.to_bundle if shadow else None)
    bundle = baseline_bundle(organization_id=agent.organization_id)
    return (bundle, None) if bundle is not None else None


def _version_of(bundle) -> str:
    return bundle.manifest.get("version", "") if bundle is not None else ""


def target_version(*, organization: Organization) -> str:
    """The version the fleet is heading to: the active rollout's new version, else the baseline's."""
    rollout = active_rollout(organization_id=organization.pk)
    if rollout is not None:
        return _version_of(rollout.to_bundle)
    return _version_of(baseline_bundle(organization_id=organization.pk))


def assigned_versions(*, organization: Organization, agents) -> dict[int, str]:
    """{agent id: the version the control plane currently assigns it}."""
    rollout = active_rollout(organization_id=organization.pk)
    if rollout is None:
        version = _version_of(baseline_bundle(organization_id=organization.pk))
        return {a.pk: version for a in agents}
    out = {}
    for agent in agents:
        enforce, _ = stage_assignment(rollout.stages, rollout.stage_index, agent)
        out[agent.pk] = _version_of(rollout.to_bundle if enforce else rollout.from_bundle)
    return out


@dataclass(frozen=True)
class AgentBundle:
    """What GET /api/v1/bundle serves an agent: the bundle it enforces and, in a shadow rollout, a second one."""

    bundle: PolicyBundle
    shadow: PolicyBundle | None = None

    @property
    def etag(self) -> str:
        if self.shadow is None:
            return self.bundle.etag
        return self.bundle.etag[:-1] + "+" + self.shadow.etag.strip('"') + '"'

    def body(self) -> dict:
        body = dict(self.bundle.bundle)
        if self.shadow is not None:
            body["shadow_bundle"] = self.shadow.bundle
        return body


def bundle_for_agent(*, agent) -> AgentBundle | None:
    """The bundle that applies to `agent`: the baseline, or what a staged rollout assigns it (and a shadow)."""
    selection = rollout_selection(agent=agent)
    if selection is None:
        return None
    return AgentBundle(bundle=selection[0], shadow=selection[1])
