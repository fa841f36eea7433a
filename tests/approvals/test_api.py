"""The approvals API: the sidecar's contract (open, wait, consume) and the reviewers' decide endpoint."""

import threading
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from cordum.accounts.choices import Role
from cordum.approvals.models import ApprovalRequest
from cordum.approvals.services import approval_cancel, approvals_expire_due
from cordum.decisions.models import EvidenceRecord
from tests.approvals.conftest import DIFF, api_client, digest, open_payload


def decide(user, approval, decision="approve", comment=""):
    return api_client(user=user).post(
        f"/api/v1/approval-requests/{approval.pk}/decide", {"decision": decision, "comment": comment}, format="json"
    )


# --- opening --------------------------------------------------------------------------------
@pytest.mark.django_db
def test_sidecar_opens_a_pending_request_with_the_contract_fields(setup):
    payload = open_payload()
    response = setup["sidecar"].post("/api/v1/approvals", payload, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "state", "expires_at"}
    assert body["state"] == "pending"
    approval = ApprovalRequest.objects.get(pk=body["id"])
    assert approval.agent == setup["agent"] and approval.organization == setup["org"]
    assert (approval.tool, approval.args_digest, approval.session_id) == ("write_file", payload["args_digest"],
                                                                          "sess_01TEST")
    assert approval.diff_text.startswith("--- a/src/app.py")
    assert 899 <= (approval.expires_at - approval.created_at).total_seconds() <= 900


@pytest.mark.django_db
def test_the_real_diff_is_stored_encrypted_and_only_an_eligible_reviewer_reads_it(setup):
    approval = setup["open"](reviewers=["team:payments"])
    stored = ApprovalRequest.objects.values_list("diff", flat=True).get(pk=approval.pk)
    assert stored and "DEBUG" not in stored  # ciphertext at rest, not the diff
    eligible = api_client(user=setup["alice"].user).get(f"/api/v1/approval-requests/{approval.pk}")
    assert eligible.status_code == 200 and eligible.json()["diff"] == DIFF
    # bob reviews organisation-wide, so he may see the request as evidence, but the policy names team:payments
    outsider = api_client(user=setup["bob"].user).get(f"/api/v1/approval-requests/{approval.pk}")
    assert outsider.status_code in (200, 404) and "-DEBUG = True" not in outsider.content.decode()
    assert outsider.status_code == 404 or outsider.json()["diff"] == ""
    listed = api_client(user=setup["bob"].user).get("/api/v1/approval-requests").content.decode()
    assert str(approval.pk) not in listed and "-DEBUG = True" not in listed


@pytest.mark.django_db
@pytest.mark.parametrize("ending", ["approve", "deny", "expire", "cancel"])
def test_the_real_diff_is_purged_once_the_request_is_decided_expired_or_cancelled(setup, ending):
    approval = setup["open"]()
    if ending in ("approve", "deny"):
        assert decide(setup["alice"].user, approval, ending).status_code == 200
    elif ending == "expire":
        ApprovalRequest.objects.filter(pk=approval.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert approvals_expire_due() == 1
    else:
        approval_cancel(approval=approval, agent=setup["agent"])
    approval.refresh_from_db()
    assert approval.state != "pending" and approval.diff == "" and approval.diff_text == ""


@pytest.mark.django_db
def test_a_retried_open_returns_the_same_request(setup):
    payload = open_payload()
    first = setup["sidecar"].post("/api/v1/approvals", payload, format="json")
    again = setup["sidecar"].post("/api/v1/approvals", payload, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert ApprovalRequest.objects.count() == 1


@pytest.mark.django_db
def test_opening_needs_an_agent_token(setup):
    response = api_client(user=setup["alice"].user).post("/api/v1/approvals", open_payload(), format="json")
    assert response.status_code == 403


@pytest.mark.django_db
def test_a_malformed_digest_is_refused_naming_the_field(setup):
    response = setup["sidecar"].post("/api/v1/approvals", open_payload(args_digest="md5:x"), format="json")
    assert response.status_code == 400
    assert "args_digest" in response.json()["message"]


@pytest.mark.django_db
def test_a_sidecar_cannot_read_another_agents_request(setup):
    from tests.factories import agent_with_token

    approval = setup["open"]()
    _, other = agent_with_token(organization=setup["org"], name="cursor-other")
    assert api_client(other.plaintext).get(f"/api/v1/approvals/{approval.pk}").status_code == 404


# --- who may decide -------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.MEMBER, Role.AUDITOR, Role.POLICY_AUTHOR])
def test_a_user_without_the_reviewer_role_gets_403(setup, role):
    approval = setup["open"]()
    outsider = setup["member"](role).user
    assert api_client(user=outsider).get("/api/v1/approval-requests").status_code == 403
    assert api_client(user=outsider).get(f"/api/v1/approval-requests/{approval.pk}").status_code == 403
    assert decide(outsider, approval).status_code == 403
    approval.refresh_from_db()
    assert approval.state == "pending"


@pytest.mark.django_db
def test_an_agent_token_cannot_decide(setup):
    approval = setup["open"]()
    response = setup["sidecar"].post(f"/api/v1/approval-requests/{approval.pk}/decide", {"decision": "approve"},
                                     format="json")
    assert response.status_code == 403


@pytest.mark.django_db
def test_self_approval_is_refused_by_default(setup):
    approval = setup["open"]()
    response = decide(setup["owner"].user, approval)
    assert response.status_code == 403
    assert "another reviewer must approve" in response.json()["message"]
    approval.refresh_from_db()
    assert approval.state == "pending"


@pytest.mark.django_db
def test_the_owner_may_still_deny_their_own_agents_request(setup):
    approval = setup["open"]()
    assert decide(setup["owner"].user, approval, "deny").status_code == 200


@pytest.mark.django_db
def test_self_approval_is_allowed_when_the_policy_allows_it(setup):
    approval = setup["open"](allow_self_approval=True)
    response = decide(setup["owner"].user, approval)
    assert response.status_code == 200
    assert response.json()["reviewer"] == "mo@example.com"


@pytest.mark.django_db
def test_only_the_reviewers_the_policy_names_may_decide(setup):
    by_team = setup["open"](reviewers=["team:payments"])
    assert decide(setup["bob"].user, by_team).status_code == 403  # reviewer, but not in payments
    assert decide(setup["alice"].user, by_team).status_code == 200
    by_user = setup["open"](reviewers=["user:bob@example.com"])
    assert decide(setup["alice"].user, by_user).status_code == 403
    assert decide(setup["bob"].user, by_user).status_code == 200


@pytest.mark.django_db
def test_the_pending_list_shows_only_requests_the_reviewer_is_named_for(setup):
    for_payments = setup["open"](reviewers=["team:payments"])
    for_bob = setup["open"](reviewers=["user:bob"])
    ids = {item["id"] for item in api_client(user=setup["alice"].user).get("/api/v1/approval-requests").json()}
    assert ids == {str(for_payments.pk)}
    ids = {item["id"] for item in api_client(user=setup["bob"].user).get("/api/v1/approval-requests").json()}
    assert ids == {str(for_bob.pk)}


@pytest.mark.django_db
def test_the_queue_puts_the_request_about_to_expire_first_not_the_oldest(setup):
    older_with_time = setup["open"](timeout_seconds=900)
    newer_expiring = setup["open"](timeout_seconds=120)
    ids = [item["id"] for item in api_client(user=setup["alice"].user).get("/api/v1/approval-requests").json()]
    assert ids == [str(newer_expiring.pk), str(older_with_time.pk)]


@pytest.mark.django_db
def test_a_reviewer_scoped_to_a_team_reviews_only_that_teams_calls_under_the_default_role_spec(setup):
    from tests.factories import TeamFactory, agent_with_token

    platform = TeamFactory(organization=setup["org"], slug="platform", name="Platform")
    carol = setup["member"](Role.REVIEWER, [platform], username="carol", email="carol@example.com")
    admin = setup["member"](Role.ADMIN, [platform], username="root", email="root@example.com")
    payments_call = setup["open"]()  # claude-code-mo is a payments agent; reviewers: ["role:reviewer"]

    assert decide(carol.user, payments_call).status_code == 404  # another team's request: as its evidence
    from cordum.approvals.dashboard import panel

    assert panel(membership=carol)["value"] == 0 and panel(membership=setup["alice"])["value"] == 1
    from django.test import Client

    page = Client()
    page.force_login(carol.user)
    assert page.get(f"/approvals/{payments_call.pk}/").status_code == 404
    carol_api = api_client(user=carol.user)
    assert carol_api.get(f"/api/v1/approval-requests/{payments_call.pk}").status_code == 404
    ids = {item["id"] for item in carol_api.get("/api/v1/approval-requests").json()}
    assert str(payments_call.pk) not in ids
    from cordum.approvals.selectors import approval_reviewer_refusal  # the service refuses it as well
    assert "You review for platform; this call comes from claude-code-mo (payments)" in approval_reviewer_refusal(
        approval=payments_call, membership=carol)
    assert str(payments_call.pk) in {  # organisation-wide reviewers (no team) still see it
        item["id"] for item in api_client(user=setup["bob"].user).get("/api/v1/approval-requests").json()}

    _agent, issued = agent_with_token(organization=setup["org"], name="cursor-plat", team=platform)
    response = api_client(issued.plaintext).post("/api/v1/approvals", open_payload(), format="json")
    platform_call = ApprovalRequest.objects.get(pk=response.json()["id"])
    assert decide(setup["alice"].user, platform_call).status_code == 404  # payments reviewer
    assert decide(carol.user, platform_call).status_code == 200
    assert decide(admin.user, payments_call).status_code == 200  # admins review every team
    history = {item["id"] for item in carol_api.get("/api/v1/approval-requests?state=decided").json()}
    assert history == {str(platform_call.pk)}
    html = page.get("/approvals/history/").content.decode()
    assert "cursor-plat" in html and "claude-code-mo" not in html
    assert str(payments_call.pk) in {  # reviewers without a team see every team's history
        item["id"] for item in api_client(user=setup["bob"].user).get("/api/v1/approval-requests?state=decided").json()}


@pytest.mark.django_db
def test_a_policy_that_names_the_person_or_team_overrides_the_team_scope(setup):
    from tests.factories import TeamFactory

    platform = TeamFactory(organization=setup["org"], slug="platform", name="Platform")
    carol = setup["member"](Role.REVIEWER, [platform], username="carol", email="carol@example.com")
    named = setup["open"](reviewers=["role:reviewer", "user:carol"])
    assert decide(carol.user, named).status_code == 200
    by_team = setup["open"](reviewers=["team:platform"])
    assert decide(carol.user, by_team).status_code == 200


# --- deciding once ----------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_decision_writes_the_reviewer_and_comment_into_the_evidence_trail(setup):
    approval = setup["open"]()
    response = decide(setup["alice"].user, approval, "approve", "looks fine")
    assert response.status_code == 200
    assert response.json()["state"] == "approved"
    record = EvidenceRecord.objects.get(organization=setup["org"], decision_id=approval.decision_id)
    assert (record.record_type, record.outcome, record.reviewer, record.comment) == (
        "outcome", "approved", "alice@example.com", "looks fine")
    assert record.agent_name == "claude-code-mo"


@pytest.mark.django_db
def test_a_second_decision_gets_409_naming_who_decided(setup):
    approval = setup["open"]()
    stale = ApprovalRequest.objects.select_related("agent").get(pk=approval.pk)  # read before the first click
    assert decide(setup["alice"].user, approval, "approve").status_code == 200
    from cordum.approvals import services
    from cordum.common.errors import Conflict

    with pytest.raises(Conflict, match="Already approved by alice@example.com"):
        services.approval_decide(approval=stale, membership=setup["bob"], decision="deny")
    response = decide(setup["bob"].user, approval, "deny")
    assert response.status_code == 409
    assert response.json()["message"].startswith("Already approved by alice@example.com")
    assert EvidenceRecord.objects.filter(decision_id=approval.decision_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_decisions_one_wins_the_other_is_told_who_won(setup):
    from django.db import connection

    from cordum.approvals import services
    from cordum.common.errors import Conflict

    approval = setup["open"]()
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def click(name, decision):
        try:
            stale = ApprovalRequest.objects.select_related("agent", "organization").get(pk=approval.pk)
            membership = setup[name].__class__.objects.select_related("user", "organization").get(pk=setup[name].pk)
            barrier.wait(timeout=10)
            services.approval_decide(approval=stale, membership=membership, decision=decision)
            results[name] = "won"
        except Conflict as exc:
            results[name] = exc.message
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=("alice", "approve")),
               threading.Thread(target=click, args=("bob", "deny"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["alice", "bob"]
    winners = [name for name, result in results.items() if result == "won"]
    assert len(winners) == 1
    loser = "bob" if winners == ["alice"] else "alice"
    approval.refresh_from_db()
    assert approval.reviewer_email == f"{winners[0]}@example.com"
    assert results[loser].startswith(f"Already {approval.state} by {winners[0]}@example.com")
    assert EvidenceRecord.objects.filter(decision_id=approval.decision_id, record_type="outcome").count() == 1


# --- consuming once ---------------------------------------------------------------------------
def consume(setup, approval, **overrides):
    body = {"args_digest": approval.args_digest, "session_id": approval.session_id, "tool": approval.tool, **overrides}
    return setup["sidecar"].post(f"/api/v1/approvals/{approval.pk}/consume", body, format="json")


@pytest.mark.django_db
def test_an_approval_is_consumed_once_then_409(setup):
    approval = setup["open"]()
    decide(setup["alice"].user, approval)
    first = consume(setup, approval)
    assert first.status_code == 200
    assert first.json()["consumed_at"]
    second = consume(setup, approval)
    assert second.status_code == 409
    assert "already used" in second.json()["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["args_digest", "session_id", "tool"])
def test_an_altered_call_cannot_use_the_approval(setup, field):
    approval = setup["open"]()
    decide(setup["alice"].user, approval)
    altered = {"args_digest": digest({"path": "src/app.py", "content": "rm -rf"}), "session_id": "sess_other",
               "tool": "edit_file"}[field]
    response = consume(setup, approval, **{field: altered})
    assert response.status_code == 400
    assert field in response.json()["message"]
    assert consume(setup, approval).status_code == 200  # the reviewed call itself still may run, once


@pytest.mark.django_db
@pytest.mark.parametrize("decision", [None, "deny"])
def test_a_pending_or_denied_request_cannot_be_consumed(setup, decision):
    approval = setup["open"]()
    if decision:
        decide(setup["alice"].user, approval, decision)
    response = consume(setup, approval)
    assert response.status_code == 409
    assert "not approved" in response.json()["message"]


# --- waiting ----------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_long_poll_returns_with_the_decision_once_another_thread_decides(setup):
    from django.db import connection

    approval = setup["open"]()
    answer = {}

    def poll():
        try:
            answer["response"] = api_client(setup["token"]).get(f"/api/v1/approvals/{approval.pk}?wait=30")
        finally:
            connection.close()

    poller = threading.Thread(target=poll)
    poller.start()
    # Decide only once the poll is subscribed to its wake-up channel, so the wake-up is what returns it.
    subscribed = threading.Event()
    channel = f"cordum:approval:{approval.pk}"
    client = redis.Redis.from_url(settings.REDIS_URL)
    while not subscribed.wait(0.01):
        if dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) > 0 or not poller.is_alive():
            subscribed.set()
    assert decide(setup["alice"].user, approval, "deny", "not now").status_code == 200
    poller.join(timeout=30)
    assert not poller.is_alive()
    body = answer["response"].json()
    assert (body["state"], body["reviewer"], body["comment"]) == ("denied", "alice@example.com", "not now")


@pytest.mark.django_db
def test_a_long_poll_on_an_overdue_request_reports_it_expired(setup):
    approval = setup["open"](timeout_seconds=1)
    response = setup["sidecar"].get(f"/api/v1/approvals/{approval.pk}?wait=30")
    assert response.json()["state"] == "expired"
    outcome = EvidenceRecord.objects.get(decision_id=approval.decision_id)
    assert outcome.outcome == "expired"


@pytest.mark.django_db
def test_a_poll_without_wait_answers_at_once(setup):
    approval = setup["open"]()
    response = setup["sidecar"].get(f"/api/v1/approvals/{approval.pk}")
    assert response.status_code == 200
    assert response.json() == {"id": str(approval.pk), "state": "pending", "reviewer": None, "comment": "",
                               "decided_at": None, "expires_at": response.json()["expires_at"], "consumed_at": None,
                               "scope": "", "target_pattern": "", "approvals_required": 1, "approvals": []}
