"""The dashboard's trends: decisions per day, approvals and their wait, top denying rules, policy versions."""

import datetime as dt
import re

import pytest
from django.test import Client
from django.utils import timezone

from cordum.decisions import services
from tests.decisions.conftest import make_decision, make_outcome

pytestmark = pytest.mark.django_db


def _ts(when):
    return when.isoformat().replace("+00:00", "Z")


def test_the_dashboard_trends_count_what_happened_and_link_to_the_explorer(org_setup):
    org, agent = org_setup["org"], org_setup["pay_agent"]
    day = (timezone.now() - dt.timedelta(days=2)).replace(hour=10, minute=0, second=0, microsecond=0)
    held = make_decision(n=1, decision="require_approval", when=day, policy_version="v2@aaa")
    denied = [make_decision(n=2 + i, decision="deny", when=day, rule="deny-env-reads", policy_version="v2@aaa")
              for i in range(3)]
    allowed = make_decision(n=9, decision="allow", when=day - dt.timedelta(days=1), policy_version="v1@bbb")
    services.evidence_append(organization=org, agent=agent, records=[held, *denied, allowed])
    services.evidence_append(organization=org, agent=agent, records=[
        make_outcome(held, "approved", reviewer="alice@example.com", timestamp=_ts(day + dt.timedelta(minutes=4)))])
    client = Client()
    client.force_login(org_setup["auditor"].user)

    html = client.get("/").content.decode()

    assert 'id="trends"' in html and "<svg" in html
    assert re.search(r'<a href="/evidence/\?start=[\d-]+&amp;end=[\d-]+&amp;decision=deny"><rect', html)
    approvals = html.split('id="trend-approvals"')[1].split("</table>")[0]
    assert re.search(r"</div>1</td><td>1</td>\s*<td>4 min</td>", approvals)
    top = html.split('id="trend-top-denying"')[1].split("</table>")[0]
    assert "deny-env-reads" in top and "<td>3</td>" in top and "decision=deny" in top
    versions = html.split('id="trend-versions"')[1].split("</table>")[0]
    assert "v2@aaa 100%" in versions and "v1@bbb 100%" in versions


def test_a_member_sees_only_his_teams_trends(org_setup):
    org = org_setup["org"]
    now = timezone.now() - dt.timedelta(hours=1)
    services.evidence_append(organization=org, agent=org_setup["web_agent"],
                             records=[make_decision(decision="deny", rule="web-only-rule", when=now)])
    client = Client()
    client.force_login(org_setup["member"].user)  # payments
    assert "web-only-rule" not in client.get("/").content.decode()


def test_time_to_decision_is_shown_as_p50_and_p90_per_team_and_per_rule(org_setup):
    org, agent = org_setup["org"], org_setup["pay_agent"]
    day = (timezone.now() - dt.timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    held = [make_decision(n=20 + i, decision="require_approval", when=day, rule="approve-git-push") for i in range(10)]
    services.evidence_append(organization=org, agent=agent, records=held)
    services.evidence_append(organization=org, agent=agent, records=[  # waits of 1..10 minutes
        make_outcome(h, "approved", reviewer="alice@example.com", timestamp=_ts(day + dt.timedelta(minutes=i + 1)))
        for i, h in enumerate(held)])
    client = Client()
    client.force_login(org_setup["auditor"].user)

    html = client.get("/").content.decode()

    by_rule = html.split('id="trend-wait-rule"')[1].split("</table>")[0]
    assert "approve-git-push" in by_rule and "rule=approve-git-push" in by_rule
    assert re.search(r"<td>10</td>\s*<td>5 min 30 s</td><td>9 min 6 s</td>", by_rule), by_rule
    by_team = html.split('id="trend-wait-team"')[1].split("</table>")[0]
    assert "payments" in by_team and "team=payments" in by_team and "5 min 30 s" in by_team
