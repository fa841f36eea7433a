from django.db import models


class ApprovalState(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class ReviewDecision(models.TextChoices):
    """A reviewer's answer: approve this call once, approve it for the rest of its session, or deny it."""

    APPROVE = "approve", "Approve once"
    APPROVE_SESSION = "approve_session", "Approve for this session"
    DENY = "deny", "Deny"


class ApprovalScope(models.TextChoices):
    """What an approval covers: the call it was opened for, or matching calls for the rest of its session."""

    ONCE = "once", "This call"
    SESSION = "session", "This session"


APPROVING = (ReviewDecision.APPROVE, ReviewDecision.APPROVE_SESSION)


DECIDED_STATES = (ApprovalState.APPROVED, ApprovalState.DENIED, ApprovalState.EXPIRED, ApprovalState.CANCELLED)
