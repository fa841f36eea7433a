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


@pytest.mark.django_db
def test_demo_requests_name_what_the_live_demo_policy_decides_for_their_call(tmp_path):
    from cordum.decisions.demo import REPOS
    from cordum.policies import demo as policies_demo
    from cordum.policy import Call, compile_policy, evaluate, policy_from_dict

    ctx: dict = {"state_dir": tmp_path}
    accounts_demo.load(ctx)
    policies_demo.load(ctx)
    demo.load(ctx)
    live = ctx["live_policy_version"]
    compiled = compile_policy(policy_from_dict(live.policy), live.version)
    requests = list(ApprovalRequest.objects.select_related("agent__team"))
    assert len(requests) == len(demo.DEMO_REQUESTS)
    for request in requests:
        root = REPOS[request.agent.team.slug]
        decided = evaluate(compiled, Call(server=request.server, tool=request.tool, arguments=request.args,
                                          agent=request.agent.name, team=request.agent.team.slug,
                                          environment=request.agent.environment, root=root))
        assert decided.decision == "require_approval", request.decision_id
        assert (request.rule, request.reason, request.action, request.topic, request.target,
                list(request.risk_tags), request.policy_version) == (
            decided.rule, decided.reason, decided.action, decided.topic, decided.target, list(decided.risk_tags),
            live.version)
