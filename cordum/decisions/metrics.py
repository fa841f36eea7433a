"""Evidence ingestion in Prometheus form (GET /metrics): records chained, what waits for the writer, and what
the database refused. Read at scrape time from each chain's head and the staged batches (both small tables),
never by counting the evidence table."""

from __future__ import annotations

from django.db.models import Count, Min, Q, Sum
from django.utils import timezone

from cordum.decisions.models import ChainHead, IngestBatch


def collect():
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    records = CounterMetricFamily("cordum_evidence_records", "Evidence records written to the organisation's "
                                  "hash chain (its head's sequence number).", labels=["org"])
    last = GaugeMetricFamily("cordum_evidence_last_recorded_timestamp_seconds", "When the last record was "
                             "chained (Unix time).", labels=["org"])
    for head in ChainHead.objects.values("organization__slug", "seq", "recorded_at").order_by("organization__slug"):
        records.add_metric([head["organization__slug"]], head["seq"])
        if head["recorded_at"] is not None:
            last.add_metric([head["organization__slug"]], head["recorded_at"].timestamp())
    yield from (records, last)

    batches = GaugeMetricFamily("cordum_ingest_batches_pending", "Accepted uploads waiting for the writer.",
                                labels=["org"])
    staged = GaugeMetricFamily("cordum_ingest_records_pending", "Records in those uploads.", labels=["org"])
    oldest = GaugeMetricFamily("cordum_ingest_oldest_pending_seconds", "Age of the oldest upload waiting for the "
                               "writer (grows when workers are down or behind).", labels=["org"])
    quarantined = GaugeMetricFamily("cordum_ingest_batches_quarantined", "Uploads the database refused on their "
                                    "own, kept aside for retry (Evidence > Quarantine).", labels=["org"])
    now = timezone.now()
    rows = (IngestBatch.objects.values("organization__slug")
            .annotate(pending=Count("id", filter=Q(error="")), records=Sum("record_count", filter=Q(error="")),
                      first=Min("received_at", filter=Q(error="")), refused=Count("id", filter=~Q(error="")))
            .order_by("organization__slug"))
    for row in rows:
        org = row["organization__slug"]
        batches.add_metric([org], row["pending"])
        staged.add_metric([org], row["records"] or 0)
        oldest.add_metric([org], max(0.0, (now - row["first"]).total_seconds()) if row["first"] else 0)
        quarantined.add_metric([org], row["refused"])
    yield from (batches, staged, oldest, quarantined)
