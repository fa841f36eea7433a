"""Streamed JSONL/CSV export (constant memory: server-side cursor, one chunk at a time) and export jobs."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import orjson
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from cordum.common import notify
from cordum.decisions.choices import ExportFormat, ExportStatus
from cordum.decisions.filters import apply_filters, parse_filters
from cordum.decisions.models import EvidenceRecord, ExportJob
from cordum.decisions.selectors import SIEM_EXPORT_FIELDS, evidence_export_dict

CHUNK = 2000
STREAM_LIMIT = 100_000  # larger ranges go through an ExportJob with progress


def export_queryset(qs: QuerySet[EvidenceRecord]) -> QuerySet[EvidenceRecord]:
    """Export order: oldest first, as in the chain."""
    return qs.order_by("timestamp", "id")


# A spreadsheet runs a cell starting with one of these as a formula; agent-supplied text (targets, commands,
# reasons) must not be able to do that to an auditor opening the CSV (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    """One CSV cell. Text that a spreadsheet would evaluate is prefixed with an apostrophe; JSONL is the exact
    form (and the one to re-verify hashes against)."""
    if value is None:
        return ""
    if isinstance(value, bool):  # as in JSON (and the JSONL export): true / false
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    return str(value)


def export_lines(qs: QuerySet[EvidenceRecord], fmt: str, progress=None) -> Iterator[bytes]:
    """Yield the export as byte chunks. `.iterator()` uses a server-side cursor on PostgreSQL."""
    done = 0
    if fmt == ExportFormat.CSV:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(SIEM_EXPORT_FIELDS)
        for record in export_queryset(qs).iterator(chunk_size=CHUNK):
            data = evidence_export_dict(record)
            writer.writerow([_cell(data[f]) for f in SIEM_EXPORT_FIELDS])
            done += 1
            if done % CHUNK == 0:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
                if progress:
                    progress(done)
        yield buffer.getvalue().encode()
    else:
        lines = []
        for record in export_queryset(qs).iterator(chunk_size=CHUNK):
            lines.append(orjson.dumps(evidence_export_dict(record)))
            done += 1
            if len(lines) == CHUNK:
                yield b"\n".join(lines) + b"\n"
                lines = []
                if progress:
                    progress(done)
        if lines:
            yield b"\n".join(lines) + b"\n"
    if progress:
        progress(done)


def export_filename(fmt: str) -> str:
    return f"evidence-{timezone.now():%Y%m%dT%H%M%S}.{fmt}"


# --- background jobs with progress -------------------------------------------------------------
def export_job_create(*, membership, filters: dict, fmt: str, scope) -> ExportJob:
    from cordum.decisions.filters import filters_to_query
    from cordum.decisions.tasks import evidence_export_task

    job = ExportJob.objects.create(
        organization_id=membership.organization_id, requested_by=membership.user, format=fmt,
        filters=filters_to_query(filters), team_scope=scope,
    )
    from django.db import transaction

    transaction.on_commit(lambda: evidence_export_task.delay(job.pk))
    return job


def export_dir() -> Path:
    path = Path(settings.STATE_DIR) / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_job_run(*, job_id: int) -> None:
    job = ExportJob.objects.get(pk=job_id)
    qs = EvidenceRecord.objects.filter(organization_id=job.organization_id)
    if job.team_scope is not None:
        qs = qs.filter(team_id__in=job.team_scope)
    qs = apply_filters(qs, parse_filters(job.filters))
    total = qs.count()
    path = export_dir() / f"export-{job.pk}.{job.format}"
    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.RUNNING, total=total, path=str(path))

    def progress(done: int) -> None:
        ExportJob.objects.filter(pk=job.pk).update(done=done)

    try:
        with open(path, "wb") as out:
            for chunk in export_lines(qs, job.format, progress=progress):
                out.write(chunk)
    except Exception as exc:
        ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.FAILED, error=str(exc)[:2000],
                                                   finished_at=timezone.now())
        notify.publish(f"evidence-export:{job.pk}")
        raise
    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.DONE, finished_at=timezone.now())
    notify.publish(f"evidence-export:{job.pk}")
