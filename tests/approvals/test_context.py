"""Context on the card: the session's recent calls (only evidence the reviewer may read) and similar past
decisions (same rule, tool and target pattern: approved/denied counts, by whom, when last); the queue grouped by
session and filtered by team, agent and rule."""

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cordum.accounts.choices import Role
from cordum.approvals.models import ApprovalRequest
from cordum.approvals.selectors import target_family
from cordum.decisions.services import evidence_append
from tests.approvals.conftest import api_client
from tests.decisions.conftest import make_decision, make_outcome
from tests.factories import TeamFactory, agent_with_token

pytestmark = pytest.mark.django_db


def session_calls(setup, *, session_id="sess_01TEST", decision_id=None):
    """Three calls of the agent's session in the evidence: a read, a denied write, then the held write."""
    now = timezone.now()
    read = make_decision(n=0, session_id=session_id, action="file.read", tool="read_file", target="src/app.py",
                         when=now - dt.timedelta(seconds=30))
    denied = make_decision(n=1, decision="deny", session_id=session_id, action="file.write", tool="write_file",
                           target=".env", when=now - dt.timedelta(seconds=20))
    held = make_decision(n=2, decision="require_approval", session_id=session_id, action="file.write",
                         tool="write_file", target="src/app.py", when=now - dt.timedelta(seconds=1),
                         **({"decision_id": decision_id} if decision_id else {}))
    evidence_append(organization=setup["org"], agent=setup["agent"],
                    records=[read, make_outcome(read), denied, held])
    return held


def test_the_card_shows_the_sessions_recent_calls_oldest_first_with_this_call_marked(setup):
    held = session_calls(setup)
    approval = setup["open"](decision_id=held["decision_id"])
    context = api_client(user=setup["alice"].user).get(f"/api/v1/approval-requests/{approval.pk}/context").json()
    timeline = context["timeline"]
    assert [(e["action"], e["target"], e["decision"]) for e in timeline] == [
        ("file.read", "src/app.py", "allow"), ("file.write", ".env", "deny"), ("file.write", "src/app.py",
                                                                               "require_approval")]
    assert timeline[0]["outcomes"] == [{"outcome": "executed", "reviewer": None}]
    assert [e["this"] for e in timeline] == [False, False, True]

    reviewer = Client()
    reviewer.force_login(setup["alice"].user)
    card = reviewer.get(reverse("approvals:detail", args=[approval.pk])).content.decode()
    assert "This session's recent calls" in card and "← this call" in card and ".env" in card
    fragment = reviewer.get(reverse("approvals:context", args=[approval.pk])).content.decode()
    assert "file.read" in fragment


def test_the_timeline_shows_only_evidence_the_reviewer_may_read(setup):
    """A reviewer of another team, named on the request by the policy, sees the request but not the calls."""
    infra = TeamFactory(organization=setup["org"], slug="infra")
    carol = setup["member"](Role.REVIEWER, [infra], username="carol", email="carol@example.com")
    held = session_calls(setup)
    approval = setup["open"](decision_id=held["decision_id"], reviewers=["user:carol@example.com"])
    context = api_client(user=carol.user).get(f"/api/v1/approval-requests/{approval.pk}/context")
    assert context.status_code == 200
    assert context.json()["timeline"] == []


def test_similar_past_decisions_count_the_same_rule_tool_and_target_pattern(setup):
    def decided(target, state, reviewer, rule="approve-writes", minutes_ago=10):
        past = setup["open"](target=target, rule=rule)
        ApprovalRequest.objects.filter(pk=past.pk).update(
            state=state, reviewer_email=reviewer, decided_at=timezone.now() - dt.timedelta(minutes=minutes_ago))

    decided("src/a.py", "approved", "alice@example.com", minutes_ago=60)
    decided("src/lib/b.py", "denied", "bob@example.com", minutes_ago=5)
    decided("src/c.py", "approved", "alice@example.com, bob@example.com", minutes_ago=30)
    decided("docs/x.md", "approved", "alice@example.com")  # another pattern
    decided("src/d.py", "approved", "alice@example.com", rule="other-rule")  # another rule
    approval = setup["open"](target="src/app.py")
    similar = api_client(user=setup["alice"].user).get(
        f"/api/v1/approval-requests/{approval.pk}/context").json()["similar"]
    assert (similar["pattern"], similar["approved"], similar["denied"]) == ("src/*", 2, 1)
    assert similar["reviewers"] == ["bob@example.com", "alice@example.com"]
    assert (similar["last_state"], similar["last_reviewer"]) == ("denied", "bob@example.com")

    reviewer = Client()
    reviewer.force_login(setup["alice"].user)
    card = reviewer.get(reverse("approvals:detail", args=[approval.pk])).content.decode()
    assert "2 approved" in card and "1 denied" in card


@pytest.mark.parametrize("target,family", [("src/app.py", "src/*"), ("origin/main", "origin/*"),
                                           ("/abs/path/x", "/abs/path/*"), ("README.md", "README.md"), ("", "")])
def test_the_target_pattern_is_the_targets_folder(target, family):
    assert target_family(target) == family


def test_the_queue_groups_requests_by_session_and_filters_by_team_agent_and_rule(setup):
    infra = TeamFactory(organization=setup["org"], slug="infra")
    other, issued = agent_with_token(organization=setup["org"], name="cursor-infra", team=infra)
    a1 = setup["open"](session_id="sess_A", rule="approve-writes")
    a2 = setup["open"](session_id="sess_A", rule="approve-deploys")
    from tests.approvals.conftest import open_payload

    response = api_client(issued.plaintext).post("/api/v1/approvals", open_payload(session_id="sess_B"),
                                                 format="json")
    b1 = ApprovalRequest.objects.get(pk=response.json()["id"])
    reviewer = Client()
    reviewer.force_login(setup["bob"].user)  # organisation-wide reviewer

    page = reviewer.get(reverse("approvals:queue")).content.decode()
    assert page.count('class="queue-group"') == 2
    assert page.index('data-session="sess_A"') < page.index(f'id="approval-{a1.pk}"') < page.index(
        'data-session="sess_B"') < page.index(f'id="approval-{b1.pk}"')

    def shown(**filters):
        html = reviewer.get(reverse("approvals:queue"), filters).content.decode()
        return {pk for pk in (a1.pk, a2.pk, b1.pk) if f'id="approval-{pk}"' in html}

    assert shown(team="infra") == {b1.pk}
    assert shown(agent="claude-code-mo") == {a1.pk, a2.pk}
    assert shown(rule="approve-deploys") == {a2.pk}
    assert shown(team="payments", rule="approve-writes") == {a1.pk}
    assert other.name in page  # the filter offers the agents waiting


def test_the_pending_list_api_takes_the_same_filters(setup):
    a1 = setup["open"](rule="approve-writes")
    setup["open"](rule="approve-deploys")
    api = api_client(user=setup["bob"].user)
    listed = api.get("/api/v1/approval-requests", {"rule": "approve-writes"}).json()
    assert [item["id"] for item in listed] == [str(a1.pk)]
    assert len(api.get("/api/v1/approval-requests", {"team": "payments"}).json()) == 2
    assert api.get("/api/v1/approval-requests", {"agent": "nobody"}).json() == []
