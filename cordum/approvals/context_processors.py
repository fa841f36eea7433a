"""The pending count beside "Approvals" in the navigation: the requests waiting for this reviewer."""

from cordum.accounts.permissions import Perm
from cordum.approvals.selectors import approval_queue_for_reviewer


def pending_count(request):
    """Lazy (a callable the template calls only when it renders the nav), and the queue's own selector,
    so the count is exactly what the reviewer's queue lists."""
    membership = getattr(request, "membership", None)
    if not membership or not membership.has_perm(Perm.REVIEW_APPROVALS):
        return {}
    return {"approvals_pending_count": lambda: len(approval_queue_for_reviewer(membership=membership))}
