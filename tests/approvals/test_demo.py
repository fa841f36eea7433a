"""The demo's approvals: a non-empty queue for alice, and a second run changes nothing."""

import pytest

from cordum.accounts import demo as accounts_demo
from cordum.approvals import demo
from cordum.approvals.models import ApprovalRequest
from cordum.approvals.selectors import approval_queue_for_reviewer


@pytest.mark.django_db
def test_the_demo_fills_the_queue_and_is_idempotent():
    ctx: dict = {}
    accounts_demo.load(ctx)
    demo.load(ctx)
    first = sorted(ApprovalRequest.objects.values_list("decision_id", "state"))
    assert {state for _, state in first} == {"pending", "approved", "denied", "expired"}
    demo.load(ctx)
    assert sorted(ApprovalRequest.objects.values_list("decision_id", "state")) == first
    alice = ctx["users"]["alice"].memberships.get()
    items = approval_queue_for_reviewer(membership=alice)
    assert len(items) == 3
    assert sum(item["can_approve"] for item in items) == 2  # her own agent's request needs another reviewer
