"""Dashboard panel: calls waiting for a reviewer."""

from django.urls import reverse

from cordum.accounts.permissions import Perm
from cordum.approvals.selectors import approval_queue_for_reviewer


def panel(*, membership) -> dict | None:
    if not membership.has_perm(Perm.REVIEW_APPROVALS):
        return None
    pending = len(approval_queue_for_reviewer(membership=membership))  # what they may decide, not every team's
    return {"title": "Pending approvals", "value": pending, "detail": "calls held for you to decide",
            "url": reverse("approvals:queue")}
