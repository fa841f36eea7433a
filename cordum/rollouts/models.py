"""Fleet status from heartbeats; rollout plans, rollouts and their history."""

from datetime import timedelta

from django.db import models
from django.utils import timezone

__all__ = ["SidecarInstance"]

STALE_INTERVALS = 3  # a sidecar is stale after this many missed heartbeat intervals


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
