"""Evidence: append-only, hash-chained records of every governed tool call, and their staging queue.

Tables:
- `EvidenceRecord` — the audit trail. Append-only in the database (triggers refuse UPDATE/DELETE),
  partitioned by month of `recorded_at` on PostgreSQL (see migrations/0001), chained per organisation.
- `EvidenceKey` — the idempotency index: one row per (organization, record_id), where record_id is
  the decision_id of a decision record or "<decision_id>:<outcome>" of an outcome record. Kept outside
  the partitioned table because a unique constraint there would have to include the partition key.
- `ChainHead` — per organisation: the last seq/hash. The single writer locks it (SELECT ... FOR UPDATE).
- `ChainCheckpoint` — signed record of the last link of a range removed by retention.
- `IngestBatch` — the durable queue: a validated upload waiting for the Celery writer.
- `ExportJob` — large exports run in Celery with progress.
"""

from django.db import models
from django.utils import timezone

from cordum.decisions.choices import ExportFormat, ExportStatus, RecordType

__all__ = ["EvidenceRecord", "EvidenceKey", "ChainHead", "ChainCheckpoint", "IngestBatch", "ExportJob"]

GENESIS_HASH = "0" * 64


class EvidenceRecord(models.Model):
    """One evidence record (a decision or an outcome appended for a decision). Never updated or deleted."""

    id = models.BigAutoField(primary_key=True)
    # Integer references without database FKs: the trail outlives teams/agents and must never be
    # touched by a cascade (the trigger would refuse it anyway). Names are copied as recorded.
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    seq = models.BigIntegerField()  # position in the organisation's chain, 1-based, gap-free
    recorded_at = models.DateTimeField()  # server time when chained; the partition key (monotonic per org)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    record_type = models.CharField(max_length=10, choices=RecordType.choices)
    decision_id = models.CharField(max_length=64)
    agent = models.ForeignKey(
        "accounts.Agent", null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    agent_name = models.CharField(max_length=100, blank=True)
    team = models.ForeignKey(
        "accounts.Team", null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    team_slug = models.CharField(max_length=100, blank=True)
    environment = models.CharField(max_length=20, blank=True)
    session_id = models.CharField(max_length=128, blank=True)
    sidecar_id = models.CharField(max_length=128, blank=True)

    action = models.CharField(max_length=200, blank=True)
    target = models.TextField(blank=True)
    server = models.CharField(max_length=200, blank=True)
    tool = models.CharField(max_length=200, blank=True)
    args_digest = models.CharField(max_length=80, blank=True)
    args = models.TextField(blank=True)  # canonical JSON text of the redacted arguments (hashed as stored)
    topic = models.CharField(max_length=300, blank=True)
    risk_tags = models.JSONField(default=list)
    decision = models.CharField(max_length=20, blank=True)
    rule = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    policy_version = models.CharField(max_length=200, blank=True)
    mode = models.CharField(max_length=10, blank=True)
    shadow = models.JSONField(default=list)

    outcome = models.CharField(max_length=20, blank=True)
    reviewer = models.CharField(max_length=254, blank=True)
    comment = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # The agent's working root the decision was made against ("{root}" and relative paths in the policy); lets a
    # simulation replay the call exactly. Hashed only when set (added after the first records were chained).
    root = models.TextField(blank=True, default="")
    # What the sidecar observed about the call beyond its decision, as canonical JSON ("" when nothing):
    # {"masked": {"AWS Access Key": 1}} for secrets masked in the tool result (kinds and counts, never values).
    facts = models.TextField(blank=True, default="")

    timestamp = models.DateTimeField()  # when the call happened (sidecar clock)
    latency_us = models.BigIntegerField(null=True)
    duration_ms = models.BigIntegerField(null=True)

    class Meta:
        indexes = [
            # Keyset pagination of the explorer (newest first) and time-range filters.
            models.Index(fields=["organization", "timestamp", "id"], name="evidence_org_ts"),
            models.Index(fields=["organization", "team", "timestamp"], name="evidence_org_team_ts"),
            models.Index(fields=["organization", "agent_name", "timestamp"], name="evidence_org_agent_ts"),
            models.Index(fields=["organization", "session_id", "timestamp"], name="evidence_org_session_ts"),
            models.Index(fields=["organization", "decision", "timestamp"], name="evidence_org_decision_ts"),
            # Record page: outcomes linked to a decision; verify/chain position.
            models.Index(fields=["organization", "decision_id"], name="evidence_org_decision_id"),
            models.Index(fields=["organization", "seq"], name="evidence_org_seq"),
        ]

    def __str__(self):
        return f"{self.record_type} {self.decision_id} #{self.seq}"

    @property
    def record_id(self) -> str:
        return self.decision_id if self.record_type == RecordType.DECISION else f"{self.decision_id}:{self.outcome}"


class EvidenceKey(models.Model):
    """Idempotency: a record id is stored once per organisation, enforced by the unique constraint."""

    # No index of its own: the unique constraint's (organization, record_id) index serves organization lookups,
    # and every claimed key would otherwise pay a second btree insert.
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    record_id = models.CharField(max_length=100)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "record_id"], name="evidence_key_unique_per_org"),
        ]

    def __str__(self):
        return self.record_id


class ChainHead(models.Model):
    organization = models.OneToOneField(
        "accounts.Organization", primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)
    recorded_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"chain head of org {self.organization_id}: #{self.seq}"


class ChainCheckpoint(models.Model):
    """The last link of a range removed by retention, HMAC-signed, so verify can resume after it."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    recorded_before = models.DateTimeField()
    partition = models.CharField(max_length=100)
    record_count = models.BigIntegerField()
    export_path = models.TextField(blank=True)
    export_sha256 = models.CharField(max_length=64, blank=True)
    signature = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["organization_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "seq"], name="checkpoint_unique_seq_per_org"),
        ]

    def __str__(self):
        return f"checkpoint #{self.seq} ({self.partition})"


class IngestBatch(models.Model):
    """A validated upload, durably stored in the request; the Celery writer chains it and deletes it."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey("accounts.Agent", null=True, on_delete=models.SET_NULL, related_name="+")
    payload = models.BinaryField()  # JSON array of normalised records (orjson bytes)
    record_count = models.IntegerField()
    received_at = models.DateTimeField(default=timezone.now)
    # Set when the database refused this batch on its own (never expected: validation runs first). A quarantined
    # batch is skipped by the writer so one bad batch cannot stall its organisation's chain. The refusal may be
    # passing (a missing partition, a lock timeout), so the beat retries it at `retry_at` with backoff
    # (`attempts` so far); admins see the counts and retry at once from Evidence > Quarantine.
    error = models.TextField(blank=True, default="")
    attempts = models.IntegerField(default=0, db_default=0)  # a DB default: stage_insert writes raw SQL
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "id"], name="ingest_batch_org_id")]

    def __str__(self):
        return f"batch {self.pk} ({self.record_count} records)"


class ExportJob(models.Model):
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    format = models.CharField(max_length=10, choices=ExportFormat.choices)
    filters = models.JSONField(default=dict)
    team_scope = models.JSONField(null=True, blank=True)  # None: every team; else the visible team ids
    status = models.CharField(max_length=10, choices=ExportStatus.choices, default=ExportStatus.QUEUED)
    total = models.BigIntegerField(default=0)
    done = models.BigIntegerField(default=0)
    path = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"export {self.pk} ({self.format}, {self.status})"

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else (100 if self.status == "done" else 0)


class ChainVerification(models.Model):
    """One run of the hash-chain verification started from the explorer, with its progress and verdict."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=ExportStatus.choices, default=ExportStatus.QUEUED)
    total = models.BigIntegerField(null=True, blank=True)
    checked = models.BigIntegerField(default=0)
    ok = models.BooleanField(null=True)
    broken_seq = models.BigIntegerField(null=True, blank=True)
    problem = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"chain verification {self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        if self.status == ExportStatus.DONE:
            return 100
        return min(99, int(100 * self.checked / self.total)) if self.total else 0
