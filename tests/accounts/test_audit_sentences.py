"""The admin audit log reads as sentences, with a before/after of the fields that changed."""

import pytest
from django.urls import reverse

from cordum.accounts import services
from cordum.accounts.choices import Role
from tests.factories import MembershipFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_role_change_reads_as_a_sentence_naming_both_roles(client):
    admin = MembershipFactory(role=Role.ADMIN, user=UserFactory(username="alice", email=""))
    mo = MembershipFactory(organization=admin.organization, role=Role.MEMBER, user=UserFactory(username="mo"))
    services.membership_update(membership=mo, actor=admin.user, role=Role.REVIEWER)
    client.force_login(admin.user)

    html = client.get(reverse("accounts:audit_log")).content.decode()

    assert "alice changed role of member mo from member to reviewer" in html
    assert "{&#x27;" not in html and "{'" not in html  # no raw dict reprs


def test_team_changes_name_the_teams_not_their_ids(client):
    admin = MembershipFactory(role=Role.ADMIN, user=UserFactory(username="root", email=""))
    team = TeamFactory(organization=admin.organization, name="Payments")
    mo = MembershipFactory(organization=admin.organization, role=Role.MEMBER, user=UserFactory(username="mo"))
    services.membership_update(membership=mo, actor=admin.user, teams=[team])
    client.force_login(admin.user)

    html = client.get(reverse("accounts:audit_log")).content.decode()

    assert "root changed teams of member mo from none to Payments" in html
