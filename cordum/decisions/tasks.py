"""Celery adapters for the evidence pipeline: take ids, call a service."""

import datetime as dt

from celery import shared_task
from django.utils import timezone

from cordum.decisions import services
from cordum.decisions.models import IngestBatch


@shared_task(
    acks_late=True, reject_on_worker_lost=True, autoretry_for=(Exception,), retry_backoff=True,
    retry_jitter=True, max_retries=8,
)
def evidence_ingest_task(batch_id: int) -> int:
    """Chain the batch (and every other pending batch of its organisation). Idempotent."""
    return services.evidence_ingest_pending(batch_id=batch_id)


@shared_task
def evidence_ingest_sweep_task(older_than_seconds: int = 30) -> int:
    """Safety net: re-enqueue batches whose message was lost (broker restart, enqueue failure)."""
    cutoff = timezone.now() - dt.timedelta(seconds=older_than_seconds)
    org_ids = set(IngestBatch.objects.filter(received_at__lt=cutoff, error="").values_list("organization_id", flat=True))
    for org_id in org_ids:
        batch_id = IngestBatch.objects.filter(organization_id=org_id, error="").order_by("id").values_list("pk", flat=True).first()
        if batch_id:
            evidence_ingest_task.delay(batch_id)
    return len(org_ids)


@shared_task
def evidence_quarantine_retry_task() -> int:
    """Retry quarantined batches whose backoff has passed (the database may accept them now)."""
    return sum(services.evidence_quarantine_release(due_only=True).values())


@shared_task(acks_late=True, reject_on_worker_lost=True)
def evidence_export_task(job_id: int) -> None:
    from cordum.decisions import exports

    exports.export_job_run(job_id=job_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def chain_verify_task(run_id: int) -> None:
    from cordum.decisions.audit import chain_verification_run

    chain_verification_run(run_id=run_id)


@shared_task
def evidence_partitions_maintain_task() -> None:
    """Create next months' partitions ahead of time (PostgreSQL)."""
    from cordum.decisions import storage

    this_month = timezone.now().date().replace(day=1)
    for months in range(3):
        month = storage.add_months(this_month, months)
        storage.ensure_partition(dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC))
