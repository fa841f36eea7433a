"""Retention without UPDATE or DELETE: export a whole month partition, checkpoint its last links, drop it.

For each month partition older than the cut-off, oldest first (PostgreSQL only):
1. stream its rows (chain order per organisation) to `<export_dir>/<partition>.jsonl.gz`, re-verifying every
   link on the way (a broken link aborts: nothing is dropped);
2. check the partition holds a prefix of each organisation's chain (recorded_at is monotonic along the
   chain, so a month is always a prefix once older months are gone);
3. in one transaction: record a signed `ChainCheckpoint` per organisation (last seq + hash of the range,
   the export file and its sha256), then DETACH PARTITION and DROP TABLE (DDL: the append-only trigger
   is never bypassed, no row is updated or deleted).
`verify_audit` then starts each chain from its newest checkpoint instead of the genesis hash.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson
from django.db import connection, transaction

from cordum.common.errors import CordumError
from cordum.decisions import storage
from cordum.decisions.models import GENESIS_HASH, ChainCheckpoint, EvidenceRecord
from cordum.decisions.selectors import evidence_as_dict
from cordum.decisions.services import chain_hash, checkpoint_signature, record_document


@dataclass
class DroppedPartition:
    name: str
    records: int
    export_path: str
    checkpoints: int


def partitions_to_drop(*, keep_months: int, today: dt.date | None = None) -> list[tuple[str, dt.date]]:
    today = today or dt.datetime.now(dt.UTC).date()
    cutoff = storage.add_months(today.replace(day=1), -keep_months)
    return [(name, month) for name, month in storage.partitions() if month < cutoff]


def partition_retire(*, name: str, month: dt.date, export_dir: Path) -> DroppedPartition:
    if connection.vendor != "postgresql":
        raise CordumError("Retention by partition needs PostgreSQL (the embedded SQLite demo keeps everything).")
    export_dir.mkdir(parents=True, exist_ok=True)
    start = dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)
    end_month = storage.add_months(month, 1)
    end = dt.datetime(end_month.year, end_month.month, 1, tzinfo=dt.UTC)
    rows = EvidenceRecord.objects.filter(recorded_at__gte=start, recorded_at__lt=end).order_by("organization_id", "seq")
    path = export_dir / f"{name}.jsonl.gz"
    digest = hashlib.sha256()
    last: dict[int, tuple[int, str, int]] = {}  # org -> (seq, hash, count)
    first_seq: dict[int, int] = {}
    prev: dict[int, str] = {}
    with gzip.open(path, "wb") as out:
        for record in rows.iterator(chunk_size=5000):
            org = record.organization_id
            if org not in prev:
                first_seq[org] = record.seq
                checkpoint = ChainCheckpoint.objects.filter(organization_id=org, seq=record.seq - 1).first()
                prev[org] = GENESIS_HASH if record.seq == 1 else (checkpoint.hash if checkpoint else record.prev_hash)
            document = record_document({c: getattr(record, c) for c in storage.COLUMNS})
            if record.prev_hash != prev[org] or chain_hash(record.prev_hash, document) != record.hash:
                raise CordumError(f"Chain of organisation {org} is broken at seq {record.seq}; "
                                  f"run verify_audit. Nothing was dropped.")
            prev[org] = record.hash
            line = orjson.dumps({"organization_id": org, **evidence_as_dict(record)}) + b"\n"
            out.write(line)
            digest.update(line)
            seq, _hash, count = last.get(org, (0, "", 0))
            last[org] = (record.seq, record.hash, count + 1)
    with transaction.atomic():
        for org, (seq, hash_, count) in last.items():
            older = EvidenceRecord.objects.filter(organization_id=org, seq__lt=first_seq[org]).exists()
            newer_out_of_range = EvidenceRecord.objects.filter(
                organization_id=org, seq__lt=seq, recorded_at__gte=end).exists()
            if older or newer_out_of_range:
                raise CordumError(f"{name} is not a prefix of organisation {org}'s chain; retire older months first.")
            ChainCheckpoint.objects.create(
                organization_id=org, seq=seq, hash=hash_, recorded_before=end, partition=name, record_count=count,
                export_path=str(path), export_sha256=digest.hexdigest(),
                signature=checkpoint_signature(organization_id=org, seq=seq, hash=hash_, recorded_before=end),
            )
        storage.detach_and_drop(name)
    return DroppedPartition(name=name, records=sum(c for _, _, c in last.values()), export_path=str(path),
                            checkpoints=len(last))
