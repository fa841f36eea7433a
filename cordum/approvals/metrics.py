"""Approvals in Prometheus form (GET /metrics): requests opened and decided, waiting, and time to decision.

Counted from the approval requests themselves at scrape time, so the numbers hold across web workers and
restarts. Time to decision covers decisions by people (approved, denied), per organisation.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.utils import timezone

from cordum.approvals.choices import ApprovalState
from cordum.approvals.models import ApprovalRequest

DECISION_BUCKETS_SECONDS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)
_HUMAN = (ApprovalState.APPROVED, ApprovalState.DENIED)


def collect():
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    opened = CounterMetricFamily("cordum_approvals_opened", "Approval requests opened by sidecars.", labels=["org"])
    decided = CounterMetricFamily("cordum_approvals_decided", "Approval requests closed, by state (approved, "
                                  "denied, expired, cancelled).", labels=["org", "state"])
    pending = GaugeMetricFamily("cordum_approvals_pending", "Approval requests waiting for a reviewer.",
                                labels=["org"])
    totals: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for row in ApprovalRequest.objects.values("organization__slug", "state").annotate(n=Count("id")).order_by():
        org = row["organization__slug"]
        totals[org] = totals.get(org, 0) + row["n"]
        if row["state"] == ApprovalState.PENDING:
            waiting[org] = row["n"]
        else:
            decided.add_metric([org, row["state"]], row["n"])
    for org, n in sorted(totals.items()):
        opened.add_metric([org], n)
        pending.add_metric([org], waiting.get(org, 0))
    yield from (opened, decided, pending)

    oldest = GaugeMetricFamily("cordum_approvals_oldest_pending_seconds", "Age of the oldest request still "
                               "waiting for a reviewer.", labels=["org"])
    now = timezone.now()
    for row in (ApprovalRequest.objects.filter(state=ApprovalState.PENDING).values("organization__slug")
                .annotate(first=Min("created_at")).order_by()):
        oldest.add_metric([row["organization__slug"]], max(0.0, (now - row["first"]).total_seconds()))
    yield oldest
    yield _time_to_decision(HistogramMetricFamily)


def _time_to_decision(HistogramMetricFamily):
    histogram = HistogramMetricFamily("cordum_approvals_time_to_decision_seconds", "From request to a reviewer's "
                                      "decision (approved or denied).", labels=["org", "state"])
    wait = ExpressionWrapper(F("decided_at") - F("created_at"), output_field=DurationField())
    buckets = {f"le_{i}": Count("id", filter=Q(decided_at__lte=F("created_at") + timedelta(seconds=b)))
               for i, b in enumerate(DECISION_BUCKETS_SECONDS)}
    rows = (ApprovalRequest.objects.filter(state__in=_HUMAN, decided_at__isnull=False)
            .values("organization__slug", "state").annotate(total=Count("id"), waited=Sum(wait), **buckets)
            .order_by())
    for row in rows:
        counts = [(str(float(b)), row[f"le_{i}"]) for i, b in enumerate(DECISION_BUCKETS_SECONDS)]
        waited = row["waited"] or timedelta(0)
        histogram.add_metric([row["organization__slug"], row["state"]], counts + [("+Inf", row["total"])],
                             sum_value=waited.total_seconds())
    return histogram
