"""The Members page says whose evidence each member reads: "all" only for roles that read every team's."""

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


def test_members_without_teams_show_all_only_when_they_read_every_teams_evidence(client):
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
    assert _teams_cell(html, no_team[Role.AUDITOR].user.username) == "all"
    for role in (Role.POLICY_AUTHOR, Role.REVIEWER, Role.MEMBER):
        membership = no_team[role]
        assert team_scope(membership) == []  # what the evidence selectors apply: no team's records
        assert _teams_cell(html, membership.user.username) == "none"
    assert _teams_cell(html, scoped.user.username) == "Payments"


def test_the_member_form_explains_what_teams_scope(client):
    org = OrganizationFactory()
    admin = MembershipFactory(organization=org, role=Role.ADMIN)
    client.force_login(admin.user)
    html = client.get(reverse("accounts:membership_create")).content.decode()
    assert "Admins and auditors read every team" in html
