"""Fleet status from heartbeats; rollout plans, rollouts and their history."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from cordum.rollouts.choices import RolloutState

__all__ = ["SidecarInstance", "RolloutPlan", "Rollout", "RolloutEvent"]

STALE_INTERVALS = 3
ACTIVE_STATES = (RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.HALTED)  # a sidecar is stale after this many missed heartbeat intervals
UNFINISHED_STATES = (*ACTIVE_STATES, RolloutState.PENDING)  # a rollout that may still move agents


class SidecarInstance(models.Model):
    """The latest heartbeat of one running sidecar (a mutable status row, updated in place)."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="sidecars")
    agent = models.ForeignKey("accounts.Agent", on_delete=models.CASCADE, related_name="sidecars")
    sidecar_id = models.CharField(max_length=128)
    hostname = models.CharField(max_length=255, blank=True, default="")
    software_version = models.CharField(max_length=50, blank=True, default="")
    bundle_version = models.CharField(max_length=200, blank=True, default="")  # the version it enforces
    bundle_sequence = models.BigIntegerField(null=True, blank=True)
    shadow_version = models.CharField(max_length=200, blank=True, default="")
    spool_depth = models.PositiveIntegerField(default=0)
    last_upload_at = models.DateTimeField(null=True, blank=True)
    counters = models.JSONField(default=dict, blank=True)  # {"allow", "deny", "require_approval", "errors"}
    interval_seconds = models.PositiveIntegerField(default=15)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["agent__name", "sidecar_id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "sidecar_id"], name="sidecar_unique_id_per_org"),
        ]

    def __str__(self):
        return f"{self.sidecar_id} ({self.agent})"

    @property
    def stale_after(self):
        return self.last_seen_at + timedelta(seconds=STALE_INTERVALS * max(1, self.interval_seconds))

    def is_stale(self, now=None) -> bool:
        return (now or timezone.now()) > self.stale_after

    @property
    def error_count(self) -> int:
        try:
            return int(self.counters.get("errors", 0) or 0)
        except (TypeError, ValueError):
            return 0


def default_stages() -> list[dict]:
    return [
        {"name": "shadow", "kind": "shadow", "min_soak_seconds": 600},
        {"name": "canary", "kind": "canary", "teams": [], "agents": [], "percent": 10, "min_soak_seconds": 1800},
        {"name": "all", "kind": "all", "min_soak_seconds": 0},
    ]


class RolloutPlan(models.Model):
    """How a repository's new live versions reach the fleet. Without a plan, a new version goes to everyone.

    `stages`: ordered list of {"name", "kind": shadow|canary|all, "teams": [slug], "agents": [name],
    "percent": 0-100, "min_soak_seconds": N}. Canary selections add up stage by stage; once a shadow stage
    is reached, agents not yet enforcing the new version evaluate it in shadow.
    """

    repository = models.OneToOneField("policies.PolicyRepository", on_delete=models.CASCADE,
                                      related_name="rollout_plan")
    stages = models.JSONField(default=default_stages)
    auto_start = models.BooleanField(default=True, help_text="Start a rollout when a new valid version goes live")
    auto_promote = models.BooleanField(
        default=False, help_text="Promote to the next stage once the soak time has passed and guardrails hold")
    max_new_restriction_rate = models.FloatField(
        default=0.05, help_text="Halt when more than this share of calls is newly denied or approval-gated")
    forecast_margin = models.FloatField(
        default=0.05, help_text="Halt when the observed rate exceeds the simulation forecast by more than this")
    min_calls = models.PositiveIntegerField(default=20, help_text="Calls needed before a guardrail can trip")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Rollout plan of {self.repository}"


class Rollout(models.Model):
    """One version travelling through the stages of its repository's plan."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="rollouts")
    repository = models.ForeignKey("policies.PolicyRepository", on_delete=models.CASCADE, related_name="rollouts")
    from_version = models.ForeignKey("policies.PolicyVersion", on_delete=models.PROTECT, related_name="+")
    to_version = models.ForeignKey("policies.PolicyVersion", on_delete=models.PROTECT, related_name="+")
    # The bundle everyone not yet on the new version enforces, and the current bundle of the new version.
    from_bundle = models.ForeignKey("policies.PolicyBundle", on_delete=models.PROTECT, related_name="+")
    to_bundle = models.ForeignKey("policies.PolicyBundle", on_delete=models.PROTECT, related_name="+")
    # Every bundle issued for to_version during this rollout (re-signing issues new ones).
    to_bundles = models.ManyToManyField("policies.PolicyBundle", related_name="rollouts", blank=True)
    rollback_bundle = models.ForeignKey("policies.PolicyBundle", null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+")
    stages = models.JSONField()  # the plan's stages as of the start (later plan edits do not move it)
    stage_index = models.IntegerField(default=-1)  # -1 before start
    stage_started_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=20, choices=RolloutState.choices, default=RolloutState.PENDING)
    max_new_restriction_rate = models.FloatField(default=0.05)
    forecast_margin = models.FloatField(default=0.05)
    min_calls = models.PositiveIntegerField(default=20)
    auto_promote = models.BooleanField(default=False)
    guardrail = models.JSONField(default=dict, blank=True)  # last check: {"state", "observed_rate", ...}
    halted_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "state"], name="rollout_org_state")]

    def __str__(self):
        return f"Rollout #{self.pk} {self.from_version} → {self.to_version}"

    @property
    def stage(self) -> dict | None:
        return self.stages[self.stage_index] if 0 <= self.stage_index < len(self.stages) else None

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def is_last_stage(self) -> bool:
        return self.stage_index >= len(self.stages) - 1

    def soak_remaining(self, now=None) -> float:
        stage = self.stage
        if stage is None or self.stage_started_at is None:
            return 0.0
        elapsed = ((now or timezone.now()) - self.stage_started_at).total_seconds()
        return max(0.0, float(stage.get("min_soak_seconds", 0) or 0) - elapsed)


class RolloutEvent(models.Model):
    """The history of a rollout: every start, stage change, pause, halt and rollback."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=20)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(max_length=150, default="system")
    from_stage = models.IntegerField(null=True, blank=True)
    to_stage = models.IntegerField(null=True, blank=True)
    message = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.action} {self.rollout_id}"
