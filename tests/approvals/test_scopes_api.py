"""Scopes of an answer and the two-person rule at the API: approve once, approve for this session, deny;
`approvals_required` distinct reviewers, the agent's owner never counting."""

import threading

import pytest

from cordum.accounts.choices import Role
from cordum.approvals.models import ApprovalRequest
from cordum.decisions.models import EvidenceRecord
from tests.approvals.conftest import api_client

BOUND = {"max_calls": 5, "max_minutes": 30}


def decide(user, approval, decision="approve", **extra):
    return api_client(user=user).post(f"/api/v1/approval-requests/{approval.pk}/decide",
                                      {"decision": decision, **extra}, format="json")


def status(setup, approval):
    return setup["sidecar"].get(f"/api/v1/approvals/{approval.pk}").json()


@pytest.mark.django_db
def test_approve_for_this_session_reports_the_scope_and_pattern_to_the_sidecar(setup):
    approval = setup["open"](session_approval=BOUND, target="src/app.py")
    assert approval.session_approval == BOUND
    response = decide(setup["alice"].user, approval, "approve_session", target_pattern="src/*")
    assert response.status_code == 200, response.content
    got = status(setup, approval)
    assert (got["state"], got["scope"], got["target_pattern"]) == ("approved", "session", "src/*")


@pytest.mark.django_db
def test_without_a_pattern_a_session_answer_covers_the_calls_own_target(setup):
    approval = setup["open"](session_approval=BOUND, target="src/app.py")
    assert decide(setup["alice"].user, approval, "approve_session").status_code == 200
    assert status(setup, approval)["target_pattern"] == "src/app.py"


@pytest.mark.django_db
def test_approve_once_has_scope_once(setup):
    approval = setup["open"](session_approval=BOUND)
    assert decide(setup["alice"].user, approval).status_code == 200
    assert status(setup, approval)["scope"] == "once"


@pytest.mark.django_db
def test_a_session_answer_is_refused_where_the_policy_does_not_offer_it(setup):
    approval = setup["open"]()  # no session_approval in the request: the policy forbids it
    response = decide(setup["alice"].user, approval, "approve_session")
    assert response.status_code == 403
    assert "does not allow approving this rule for a whole session" in response.json()["message"]
    approval.refresh_from_db()
    assert approval.state == "pending"


@pytest.mark.django_db
def test_a_pattern_that_does_not_cover_the_call_is_refused_naming_the_field(setup):
    approval = setup["open"](session_approval=BOUND, target="src/app.py")
    response = decide(setup["alice"].user, approval, "approve_session", target_pattern="docs/*")
    assert response.status_code == 400
    assert response.json()["extra"] == {"field": "target_pattern"}
    assert "does not cover this call's target 'src/app.py'" in response.json()["message"]
    response = decide(setup["alice"].user, approval, "approve_session", target_pattern="src/[a")
    assert response.status_code == 400 and "Invalid target pattern" in response.json()["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("bad", [True, {"max_calls": 0}, {"max_hours": 2}, {}, "20 calls"])
def test_a_malformed_session_bound_is_refused_when_opening(setup, bad):
    from tests.approvals.conftest import open_payload

    response = setup["sidecar"].post("/api/v1/approvals", open_payload(session_approval=bad), format="json")
    assert response.status_code == 400
    assert "session_approval" in response.json()["message"]


@pytest.mark.django_db
def test_two_approvals_from_distinct_reviewers_approve_and_the_owner_never_counts(setup):
    approval = setup["open"](approvals_required=2, allow_self_approval=True)
    owner = decide(setup["owner"].user, approval)
    assert owner.status_code == 403 and "owner never counts" in owner.json()["message"]
    first = decide(setup["alice"].user, approval, comment="fine")
    assert first.json()["state"] == "pending" and [a["reviewer"] for a in first.json()["approvals"]] == [
        "alice@example.com"]
    assert status(setup, approval)["state"] == "pending"
    assert not EvidenceRecord.objects.filter(decision_id=approval.decision_id).exists()  # nothing final yet
    twice = decide(setup["alice"].user, approval)
    assert twice.status_code == 403 and "needs 1 more approval" in twice.json()["message"]
    second = decide(setup["bob"].user, approval, comment="ok")
    assert second.json()["state"] == "approved"
    assert [a["reviewer"] for a in second.json()["approvals"]] == ["alice@example.com", "bob@example.com"]
    outcome = EvidenceRecord.objects.get(decision_id=approval.decision_id, record_type="outcome")
    assert (outcome.outcome, outcome.reviewer) == ("approved", "alice@example.com, bob@example.com")


@pytest.mark.django_db
def test_a_session_answer_needs_every_approver_to_choose_the_session(setup):
    approval = setup["open"](approvals_required=2, session_approval=BOUND)
    decide(setup["alice"].user, approval, "approve_session")
    decide(setup["bob"].user, approval, "approve")
    assert status(setup, approval)["scope"] == "once"


@pytest.mark.django_db
def test_an_approver_who_changes_their_mind_can_still_deny(setup):
    approval = setup["open"](approvals_required=2)
    decide(setup["alice"].user, approval)
    response = decide(setup["alice"].user, approval, "deny", comment="on second thought")
    assert response.status_code == 200 and response.json()["state"] == "denied"
    assert response.json()["approvals"] == []


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_approving_at_the_same_moment_are_both_counted(setup):
    from django.db import connection

    from cordum.approvals import services

    carol = setup["member"](Role.REVIEWER, [], username="carol", email="carol@example.com")
    approval = setup["open"](approvals_required=2)
    barrier = threading.Barrier(2)
    errors: list = []

    def click(membership):
        try:
            stale = ApprovalRequest.objects.select_related("agent", "organization").get(pk=approval.pk)
            member = membership.__class__.objects.select_related("user", "organization").get(pk=membership.pk)
            barrier.wait(timeout=10)
            services.approval_decide(approval=stale, membership=member, decision="approve")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=(m,)) for m in (setup["bob"], carol)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    approval.refresh_from_db()
    assert approval.state == "approved"
    assert sorted(approval.reviewer_email.split(", ")) == ["bob@example.com", "carol@example.com"]
