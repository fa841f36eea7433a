"""Thin Celery wrappers: take ids, call a service."""

from celery import shared_task

from cordum.approvals import services
from cordum.approvals.models import ApprovalRequest


@shared_task(name="cordum.approvals.tasks.approvals_expire_task", acks_late=True, task_reject_on_worker_lost=True)
def approvals_expire_task() -> int:
    """Beat (every 15 s): pending requests past their deadline become expired, with evidence."""
    return services.approvals_expire_due()


@shared_task(name="cordum.approvals.tasks.approval_notify_task", ignore_result=True)
def approval_notify_task(approval_id: str) -> bool:
    """Best effort: one attempt to tell the organisation's webhook that a request is waiting."""
    approval = ApprovalRequest.objects.select_related("organization", "agent").filter(pk=approval_id).first()
    if approval is None or approval.state != "pending":
        return False
    return services.approval_notify(approval=approval)
