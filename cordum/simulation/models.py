"""Simulations: a candidate policy replayed against the recorded calls of a time window."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from cordum.simulation.choices import Baseline, CandidateSource, SimulationStatus

__all__ = ["PolicyChange", "Simulation"]


class Simulation(models.Model):
    """One dry run. The report is saved with it, so its URL can be shared and compared later."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="simulations")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The candidate: a PolicyVersion (branch head, PR commit) or pasted/uploaded safety.yaml text.
    candidate_source = models.CharField(max_length=10, choices=CandidateSource.choices)
    candidate_version = models.ForeignKey(
        "policies.PolicyVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="simulations"
    )
    candidate_text = models.TextField(blank=True, default="")
    # The teams whose recorded calls it replays (None: every team's): its creator's scope, so a simulation is never
    # an oracle for calls its creator may not read; only readers of those teams (or of every team) may open it.
    team_scope = models.JSONField(null=True, blank=True)
    candidate_label = models.CharField(max_length=200, blank=True, default="")
    # The live version when the simulation was created; replayed as "before" when baseline == live.
    baseline_version = models.ForeignKey(
        "policies.PolicyVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    baseline = models.CharField(max_length=10, choices=Baseline.choices, default=Baseline.RECORDED)

    days = models.PositiveSmallIntegerField(default=7)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    team = models.CharField(max_length=100, blank=True, default="")  # team slug
    agent = models.CharField(max_length=100, blank=True, default="")  # agent name
    environment = models.CharField(max_length=20, blank=True, default="")
    fail_if_newly_denied_over = models.PositiveIntegerField(null=True, blank=True)

    status = models.CharField(max_length=10, choices=SimulationStatus.choices, default=SimulationStatus.QUEUED)
    progress = models.FloatField(default=0.0)  # 0..1
    rows_total = models.BigIntegerField(default=0)
    rows_processed = models.BigIntegerField(default=0)
    report = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Automatic simulations of a policy change: sha256 of (candidate content, baseline content, window days,
    # evidence watermark, scope). A push whose policy content was simulated against the same evidence reuses it.
    cache_key = models.CharField(max_length=64, blank=True, default="")
    evidence_watermark = models.BigIntegerField(null=True, blank=True)  # the org's highest evidence seq when created

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "created_at"], name="simulation_org_created")]
        constraints = [
            models.UniqueConstraint(fields=["organization", "cache_key"], condition=~models.Q(cache_key=""),
                                    name="simulation_unique_cache_key"),
        ]

    def __str__(self):
        return f"Simulation #{self.pk} of {self.candidate_label}"

    @property
    def is_finished(self) -> bool:
        return self.status in (SimulationStatus.COMPLETED, SimulationStatus.FAILED)

    @property
    def percent(self) -> int:
        return 100 if self.status == SimulationStatus.COMPLETED else int(round(self.progress * 100))

    @property
    def gate(self) -> dict | None:
        """The CI gate: fail when more than N calls would newly be denied."""
        if self.fail_if_newly_denied_over is None or not self.report:
            return None
        newly = self.report["summary"]["newly_denied"]
        return {"fail_if_newly_denied_over": self.fail_if_newly_denied_over, "newly_denied": newly,
                "passed": newly <= self.fail_if_newly_denied_over}


class PolicyChange(models.Model):
    """A branch or pull/merge request head of a policy repository, as last synced: the policy version it carries
    and the (cached) simulation of that version against the live one. Refreshed after every sync."""

    repository = models.ForeignKey("policies.PolicyRepository", on_delete=models.CASCADE, related_name="changes")
    ref = models.CharField(max_length=300)  # "feature/x", "pull/7/head", "merge-requests/3/head"
    head_sha = models.CharField(max_length=40)
    version = models.ForeignKey("policies.PolicyVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    simulation = models.ForeignKey(Simulation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # cordum.yaml of the live branch when the change was refreshed (the gates it is judged by) and that commit.
    gates_text = models.TextField(null=True, blank=True)
    gates_commit = models.CharField(max_length=40, blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)
    # Posting back to the forge: what was last posted ("<head sha>:<state>:<simulation id>", so the same result
    # is not posted twice) and the id of the one summary comment on the pull request, updated in place.
    forge_posted = models.CharField(max_length=120, blank=True, default="")
    forge_comment_id = models.BigIntegerField(null=True, blank=True)
    forge_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["ref"]
        constraints = [
            models.UniqueConstraint(fields=["repository", "ref"], name="policy_change_unique_ref"),
        ]

    def __str__(self):
        return f"{self.ref}@{self.head_sha[:7]}"
