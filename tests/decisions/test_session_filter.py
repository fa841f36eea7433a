"""Filtering by session keeps the session's outcome records (who approved, executed), which carry no session id."""

import orjson
import pytest
from django.test import Client

from cordum.decisions import services
from tests.decisions.conftest import make_decision, make_outcome

pytestmark = pytest.mark.django_db


@pytest.fixture
def approved_session(org_setup):
    held = make_decision(n=1, decision="require_approval", session_id="sess_a")
    read = make_decision(n=2, decision="allow", session_id="sess_a")
    other = make_decision(n=3, decision="require_approval", session_id="sess_b")
    org, agent = org_setup["org"], org_setup["pay_agent"]
    services.evidence_append(organization=org, records=[held, read, other], agent=agent)
    services.evidence_append(organization=org, agent=agent, records=[
        make_outcome(held, "approved", reviewer="alice@example.com", comment="LGTM"),
        make_outcome(held, "executed"), make_outcome(read, "executed"), make_outcome(other, "denied"),
    ])
    return {**org_setup, "held": held, "read": read}


def _client(membership) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def test_a_session_export_carries_its_approvals_and_outcomes(approved_session):
    response = _client(approved_session["auditor"]).get("/evidence/export/?format=jsonl&session=sess_a")
    rows = [orjson.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    held = approved_session["held"]["decision_id"]
    assert sorted((r["record_type"], r["decision_id"] == held, r["outcome"], r["reviewer"]) for r in rows) == [
        ("decision", False, None, None),
        ("decision", True, None, None),
        ("outcome", False, "executed", None),
        ("outcome", True, "approved", "alice@example.com"),
        ("outcome", True, "executed", None),
    ]


def test_the_explorer_counts_the_session_with_its_outcomes_and_filters_among_them(approved_session):
    client = _client(approved_session["auditor"])
    assert 'id="evidence-count">5<' in client.get("/evidence/?session=sess_a").content.decode()
    assert 'id="evidence-count">2<' in client.get("/evidence/?session=sess_a&record_type=decision").content.decode()
    approved = client.get("/evidence/?session=sess_a&outcome=approved").content.decode()
    assert 'id="evidence-count">1<' in approved and "alice@example.com" in approved


def test_a_members_session_filter_stays_within_their_teams(approved_session):
    from cordum.accounts.choices import Role
    from tests.factories import MembershipFactory

    assert len(_client(approved_session["member"]).get("/api/v1/evidence?session=sess_a").json()["records"]) == 5
    web_member = MembershipFactory(organization=approved_session["org"], role=Role.MEMBER)
    web_member.teams.set([approved_session["web"]])
    assert _client(web_member).get("/api/v1/evidence?session=sess_a").json()["records"] == []


def test_an_explorer_row_of_a_held_call_shows_who_approved_it_and_that_it_ran(approved_session):
    import re

    html = _client(approved_session["auditor"]).get("/evidence/?record_type=decision&session=sess_a").content.decode()
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    held = next(r for r in rows if "require_approval" in r)
    outcomes = re.findall(r'class="linked-outcome"[^>]*>.*?<span class="badge (\w+)">.*?</span>(?: <span class="muted">'
                          r'([^<]*)</span>)?</span>', held, re.S)
    assert outcomes == [("approved", "alice@example.com"), ("executed", "")]
    allowed = next(r for r in rows if ">allow<" in r)
    assert "linked-outcome" in allowed  # the read's own `executed` came as a separate record too


def test_an_outcome_records_page_links_the_session_of_its_decision(approved_session):
    from cordum.decisions.models import EvidenceRecord

    approved = EvidenceRecord.objects.get(decision_id=approved_session["held"]["decision_id"], outcome="approved")
    assert approved.session_id == ""
    html = _client(approved_session["auditor"]).get(f"/evidence/records/{approved.pk}/").content.decode()
    assert '<a class="mono" href="/evidence/sessions/sess_a/">sess_a</a> <span class="muted">(its decision\'s)' in html


def test_the_session_filter_accepts_the_start_of_an_id(approved_session):
    html = _client(approved_session["auditor"]).get("/evidence/?session=sess_").content.decode()
    assert html.count('class="badge require_approval"') >= 2  # sess_a and sess_b both start with sess_
    exact = _client(approved_session["auditor"]).get("/evidence/export/?format=jsonl&session=sess_a")
    prefix = _client(approved_session["auditor"]).get("/evidence/export/?format=jsonl&session=sess_")
    assert len(b"".join(prefix.streaming_content).splitlines()) > len(b"".join(exact.streaming_content).splitlines())


def test_a_session_spans_until_its_last_outcome_and_reads_in_minutes(approved_session):
    import datetime as dt

    from cordum.common.templatetags.cordum_tags import duration

    org, agent = approved_session["org"], approved_session["pay_agent"]
    start = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
    held = make_decision(decision="require_approval", session_id="sess_long", when=start)
    services.evidence_append(organization=org, records=[held], agent=agent)
    later = make_outcome(held, "approved", reviewer="alice@example.com",
                         timestamp=(start + dt.timedelta(minutes=7, seconds=5)).isoformat().replace("+00:00", "Z"))
    services.evidence_append(organization=org, records=[later], agent=agent)

    html = _client(approved_session["auditor"]).get("/evidence/sessions/sess_long/").content.decode()

    assert '<div class="stat" id="session-span">7 min 5 s</div>' in html
    assert [duration(s) for s in (0.4, 41, 3600, 9244)] == ["0.4 s", "41 s", "1 h", "2 h 34 min"]
