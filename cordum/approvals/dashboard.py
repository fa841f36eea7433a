"""Dashboard panel: calls waiting for a reviewer; for people who do not review, their own agents' held calls."""

from urllib.parse import urlencode

from django.urls import reverse

from cordum.accounts.models import Agent
from cordum.accounts.permissions import Perm
from cordum.approvals.choices import ApprovalState
from cordum.approvals.models import ApprovalRequest
from cordum.approvals.selectors import approval_queue_for_reviewer


def _own_agents_panel(*, membership) -> dict | None:
    """For the owner of agents: how many of their calls wait for a reviewer (None if they own no agent)."""
    if not Agent.objects.filter(organization_id=membership.organization_id, owner_id=membership.user_id).exists():
        return None
    held = ApprovalRequest.objects.filter(organization_id=membership.organization_id, state=ApprovalState.PENDING,
                                          agent__owner_id=membership.user_id)
    agents = sorted(set(held.values_list("agent__name", flat=True)))
    query = urlencode({"decision": "require_approval", **({"agent": agents[0]} if len(agents) == 1 else {})})
    return {"title": "Your agents' held calls", "value": held.count(),
            "detail": f"waiting for a reviewer{': ' + ', '.join(agents) if agents else ''}",
            "url": f"{reverse('decisions:explorer')}?{query}"}


def panel(*, membership) -> dict | None:
    if not membership.has_perm(Perm.REVIEW_APPROVALS):
        return _own_agents_panel(membership=membership) if membership.has_perm(Perm.VIEW_OWN_TEAM) else None
    pending = len(approval_queue_for_reviewer(membership=membership))  # what they may decide, not every team's
    return {"title": "Pending approvals", "value": pending, "detail": "calls held for you to decide",
            "url": reverse("approvals:queue")}
