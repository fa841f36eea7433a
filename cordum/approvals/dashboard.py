"""Dashboard panel: calls waiting for a reviewer."""

from django.urls import reverse

from cordum.accounts.permissions import Perm
from cordum.approvals.selectors import approval_pending_list


def panel(*, membership) -> dict | None:
    if not membership.has_perm(Perm.REVIEW_APPROVALS):
        return None
    pending = approval_pending_list(organization=membership.organization).count()
    return {"title": "Pending approvals", "value": pending, "detail": "calls held until a reviewer decides",
            "url": reverse("approvals:queue")}
