from django.db import models


class RolloutState(models.TextChoices):
    PENDING = "pending", "Waiting to start"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    HALTED = "halted", "Halted by guardrail"
    COMPLETED = "completed", "Completed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    SUPERSEDED = "superseded", "Superseded"


class StageKind(models.TextChoices):
    SHADOW = "shadow", "Shadow for all (evaluate new, enforce old)"
    CANARY = "canary", "Enforce for canary teams/agents or a percentage"
    ALL = "all", "Enforce for all"


class GuardrailState(models.TextChoices):
    UNKNOWN = "unknown", "Not checked yet"
    OK = "ok", "Within thresholds"
    INSUFFICIENT = "insufficient", "Not enough calls yet"
    BREACHED = "breached", "Breached"


class RolloutAction(models.TextChoices):
    CREATE = "create", "Created"
    START = "start", "Started"
    PROMOTE = "promote", "Promoted"
    PAUSE = "pause", "Paused"
    RESUME = "resume", "Resumed"
    HALT = "halt", "Halted"
    ROLLBACK = "rollback", "Rolled back"
    COMPLETE = "complete", "Completed"
    SUPERSEDE = "supersede", "Superseded"
