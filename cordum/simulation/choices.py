from django.db import models


class SimulationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class CandidateSource(models.TextChoices):
    VERSION = "version", "Policy version"
    TEXT = "text", "Pasted or uploaded safety.yaml"


class Baseline(models.TextChoices):
    RECORDED = "recorded", "Decisions actually recorded"
    LIVE = "live", "The live version, replayed"
