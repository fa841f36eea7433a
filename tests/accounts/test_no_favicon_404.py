"""Pages declare their icon inline, so a browser does not request /favicon.ico and log a 404 on every page."""

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_pages_declare_an_inline_icon(client):
    assert '<link rel="icon" href="data:,">' in client.get(reverse("login")).content.decode()
    client.force_login(MembershipFactory(role=Role.MEMBER).user)
    assert '<link rel="icon" href="data:,">' in client.get(reverse("accounts:dashboard")).content.decode()
