from django.db import models


class SyncStatus(models.TextChoices):
    NEW = "new", "New"
    QUEUED = "queued", "Queued"
    SYNCING = "syncing", "Syncing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class KeyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired"


class DriftKind(models.TextChoices):
    """How a tool a server lists differs from tools.lock (cordum.policy.toollock.DriftKind)."""

    NEW = "new", "New tool"
    CHANGED = "changed", "Changed"
    REMOVED = "removed", "Removed"


class DriftStatus(models.TextChoices):
    OPEN = "open", "Open"
    PROPOSED = "proposed", "Lock update proposed"
