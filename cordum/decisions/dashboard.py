"""Dashboard panel: decisions in the last 24 hours, within what this member may read."""

from datetime import timedelta

from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from cordum.accounts.permissions import Perm
from cordum.decisions.choices import RecordType
from cordum.decisions.selectors import evidence_visible


def panel(*, membership) -> dict | None:
    if not membership.has_perm(Perm.VIEW_OWN_TEAM):
        return None
    since = timezone.now() - timedelta(hours=24)
    rows = (
        evidence_visible(membership=membership)
        .filter(timestamp__gte=since, record_type=RecordType.DECISION)
        .values("decision").annotate(n=Count("id")).order_by()
    )
    counts = {r["decision"]: r["n"] for r in rows}
    total = sum(counts.values())
    detail = ", ".join(f"{counts.get(d, 0)} {d.replace('_', ' ')}" for d in ("allow", "require_approval", "deny"))
    return {"title": "Tool calls, last 24 h", "value": total, "detail": detail, "url": reverse("decisions:explorer")}
