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
