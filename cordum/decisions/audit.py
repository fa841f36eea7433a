"""Verification of the per-organisation hash chain (used by `manage.py verify_audit` and the UI)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from cordum.decisions import storage
from cordum.decisions.choices import ExportStatus
from cordum.decisions.models import (
    GENESIS_HASH,
    ChainCheckpoint,
    ChainHead,
    ChainVerification,
    EvidenceRecord,
)
from cordum.decisions.services import chain_hash, checkpoint_signature, record_document


@dataclass
class VerifyResult:
    organization_id: int
    ok: bool = True
    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    resumed_from_checkpoint: int | None = None
    broken_seq: int | None = None
    broken_id: int | None = None
    problem: str = ""
    details: list[str] = field(default_factory=list)

    def fail(self, *, seq, pk, problem):
        self.ok, self.broken_seq, self.broken_id, self.problem = False, seq, pk, problem
        return self


def verify_chain(*, organization_id: int, chunk_size: int = 5000, on_progress=None) -> VerifyResult:
    """Walk the chain in seq order and recompute every link; stop at the first broken one.

    Checks per record: seq follows without gaps, prev_hash equals the previous record's hash, and
    hash == sha256(prev_hash || canonical_json(record)). The start is the genesis hash, or the signed
    checkpoint left by retention when the oldest partitions were dropped. The end must match ChainHead.
    `on_progress(checked, total=...)` is called after each chunk (total: the records the head says there are).
    """
    result = VerifyResult(organization_id=organization_id)
    qs = EvidenceRecord.objects.filter(organization_id=organization_id).order_by("seq")
    first = qs.values_list("seq", flat=True).first()
    head = ChainHead.objects.filter(organization_id=organization_id).first()
    if first is None:
        if head and head.seq:
            checkpoint = ChainCheckpoint.objects.filter(organization_id=organization_id, seq=head.seq).first()
            if checkpoint is None or checkpoint.hash != head.hash:
                return result.fail(seq=head.seq, pk=None, problem="chain head points at records that are missing")
        return result
    prev_hash, expected_seq = GENESIS_HASH, 1
    if first != 1:
        checkpoint = ChainCheckpoint.objects.filter(organization_id=organization_id, seq=first - 1).first()
        if checkpoint is None:
            return result.fail(seq=first, pk=None,
                               problem=f"records 1..{first - 1} are missing and no retention checkpoint covers them")
        signature = checkpoint_signature(organization_id=organization_id, seq=checkpoint.seq, hash=checkpoint.hash,
                                         recorded_before=checkpoint.recorded_before)
        if signature != checkpoint.signature:
            return result.fail(seq=checkpoint.seq, pk=None, problem="retention checkpoint signature is invalid")
        prev_hash, expected_seq = checkpoint.hash, first
        result.resumed_from_checkpoint = checkpoint.seq
    result.first_seq = first
    columns = ("id", "prev_hash", "hash", *[c for c in storage.COLUMNS if c not in ("prev_hash", "hash")])
    last_seq = expected_seq - 1
    total = head.seq - last_seq if head else None
    while True:
        rows = list(qs.filter(seq__gt=last_seq).values(*columns)[:chunk_size])
        if not rows:
            break
        for row in rows:
            seq = row["seq"]
            if seq != expected_seq:
                return result.fail(seq=expected_seq, pk=row["id"],
                                   problem=f"seq {expected_seq} is missing (next stored is {seq})")
            if row["prev_hash"] != prev_hash:
                return result.fail(seq=seq, pk=row["id"], problem="prev_hash does not match the previous record's hash")
            if chain_hash(prev_hash, record_document(row)) != row["hash"]:
                return result.fail(seq=seq, pk=row["id"], problem="record content does not match its hash (altered)")
            prev_hash, expected_seq = row["hash"], seq + 1
            result.checked += 1
        last_seq = rows[-1]["seq"]
        if on_progress is not None:
            on_progress(result.checked, total=total)
    result.last_seq = last_seq
    if head and (head.seq != last_seq or head.hash != prev_hash):
        return result.fail(seq=last_seq + 1, pk=None,
                           problem=f"chain head says seq {head.seq} but the stored chain ends at {last_seq}")
    return result


def chain_verification_start(*, membership) -> ChainVerification:
    """Queues a verification of the organisation's chain; its page shows progress while a worker runs it."""
    from cordum.decisions.tasks import chain_verify_task  # tasks import this module

    run = ChainVerification.objects.create(organization_id=membership.organization_id, requested_by=membership.user)
    transaction.on_commit(lambda: chain_verify_task.delay(run.pk))
    return run


def chain_verification_run(*, run_id: int) -> None:
    run = ChainVerification.objects.get(pk=run_id)
    runs = ChainVerification.objects.filter(pk=run.pk)
    runs.update(status=ExportStatus.RUNNING)

    def progress(checked: int, *, total: int | None = None) -> None:
        runs.update(checked=checked, total=total)

    try:
        result = verify_chain(organization_id=run.organization_id, on_progress=progress)
    except Exception as exc:
        runs.update(status=ExportStatus.FAILED, problem=f"verification could not run: {exc}"[:2000],
                    finished_at=timezone.now())
        raise
    runs.update(status=ExportStatus.DONE, checked=result.checked, ok=result.ok, broken_seq=result.broken_seq,
                problem=result.problem or "", finished_at=timezone.now())
