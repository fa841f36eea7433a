from django.db import models


class RecordType(models.TextChoices):
    DECISION = "decision", "decision"
    OUTCOME = "outcome", "outcome"


class DecisionValue(models.TextChoices):
    ALLOW = "allow", "allow"
    REQUIRE_APPROVAL = "require_approval", "require_approval"
    DENY = "deny", "deny"


class Outcome(models.TextChoices):
    APPROVED = "approved", "approved"
    DENIED = "denied", "denied"
    EXPIRED = "expired", "expired"
    TIMED_OUT = "timed_out", "timed_out"
    EXECUTED = "executed", "executed"
    FAILED = "failed", "failed"
    BLOCKED = "blocked", "blocked"
    CANCELLED = "cancelled", "cancelled"
    ALLOWED_ON_TIMEOUT = "allowed_on_timeout", "allowed_on_timeout"
    UNKNOWN = "unknown", "unknown"  # a sidecar died after forwarding the call and before recording its result


class Mode(models.TextChoices):
    ENFORCE = "enforce", "enforce"
    SHADOW = "shadow", "shadow"


class ExportFormat(models.TextChoices):
    JSONL = "jsonl", "JSON Lines"
    CSV = "csv", "CSV"


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"
