"""The Members page says whose evidence each member reads, as the evidence selectors apply it."""

import re

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from cordum.decisions.selectors import team_scope
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory

pytestmark = pytest.mark.django_db


def _teams_cell(html: str, username: str) -> str:
    row = re.search(rf"<tr><td>{username}</td>.*?</tr>", html, re.S).group(0)
    return re.sub(r"<[^>]+>", "", re.findall(r"<td>(.*?)</td>", row, re.S)[3]).strip()


def test_members_page_says_all_for_unscoped_staff_and_own_agents_for_unscoped_members(client):
    org = OrganizationFactory()
    payments = TeamFactory(organization=org, name="Payments", slug="payments")
    admin = MembershipFactory(organization=org, role=Role.ADMIN)
    no_team = {role: MembershipFactory(organization=org, role=role)
               for role in (Role.AUDITOR, Role.POLICY_AUTHOR, Role.REVIEWER, Role.MEMBER)}
    scoped = MembershipFactory(organization=org, role=Role.REVIEWER)
    scoped.teams.set([payments])
    client.force_login(admin.user)
    html = client.get(reverse("accounts:membership_list")).content.decode()

    assert _teams_cell(html, admin.user.username) == "all"
    for role in (Role.AUDITOR, Role.POLICY_AUTHOR, Role.REVIEWER):  # unscoped staff read every team's
        assert team_scope(no_team[role]) is None
        assert _teams_cell(html, no_team[role].user.username) == "all"
    assert team_scope(no_team[Role.MEMBER]) == []  # a member scoped to no team: only their own agents
    assert _teams_cell(html, no_team[Role.MEMBER].user.username) == "own agents"
    assert _teams_cell(html, scoped.user.username) == "Payments"


def test_the_member_form_explains_what_teams_scope(client):
    org = OrganizationFactory()
    admin = MembershipFactory(organization=org, role=Role.ADMIN)
    client.force_login(admin.user)
    html = client.get(reverse("accounts:membership_create")).content.decode()
    assert "Admins and auditors read every team" in html
