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
    for _ in range(settings.CORDUM_LOGIN_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": username, "password": "wrong"})
    locked = client.post(reverse("login"), {"username": username, "password": "pw-for-tests-1"})  # even the right one
    assert locked.status_code in (403, 429) and "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session

    call_command("axes_reset_username", username)
    client.post(reverse("login"), {"username": username, "password": "pw-for-tests-1"})
    assert "_auth_user_id" in client.session


def test_invalid_bearer_tokens_lock_the_address_out_of_the_api_until_an_admin_unlocks_it(settings):
    from rest_framework.test import APIClient

    from tests.factories import OrganizationFactory, agent_with_token

    settings.CORDUM_TOKEN_FAILURE_LIMIT = 3
    _agent, issued = agent_with_token(organization=OrganizationFactory())
    guesser = APIClient()
    for i in range(settings.CORDUM_TOKEN_FAILURE_LIMIT):
        guesser.credentials(HTTP_AUTHORIZATION=f"Bearer cdm_agent_guess{i}")
        assert guesser.get("/api/v1/bundle").status_code in (401, 403, 429)
    guesser.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.plaintext}")  # even a valid token, from that address
    locked = guesser.get("/api/v1/bundle")
    assert locked.status_code == 429 and "Too many invalid tokens" in locked.json()["message"]

    call_command("axes_reset_ip", "127.0.0.1")
    assert guesser.get("/api/v1/bundle").status_code != 429
