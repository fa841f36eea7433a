"""Password logins are throttled (django-axes): repeated failures lock the username out from that address, with a
clear page, until the cool-off passes or an admin unlocks it."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from cordum.accounts.choices import Role
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_repeated_failed_logins_lock_the_username_out_until_an_admin_unlocks_it(client, settings):
    member = MembershipFactory(role=Role.MEMBER)
    username = member.user.username
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": username, "password": "wrong"})
    locked = client.post(reverse("login"), {"username": username, "password": "pw-for-tests-1"})  # even the right one
    assert locked.status_code in (403, 429) and "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session

    call_command("axes_reset_username", username)
    client.post(reverse("login"), {"username": username, "password": "pw-for-tests-1"})
    assert "_auth_user_id" in client.session
