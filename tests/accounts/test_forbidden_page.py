"""A refused page says why (the role check's message) inside the app's layout, not a blank "403 Forbidden"."""

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url_name", ["accounts:agent_list", "approvals:queue", "simulation:list"])
def test_a_member_refused_a_page_is_told_their_role_does_not_allow_it(client, url_name):
    membership = MembershipFactory(organization=OrganizationFactory(), role=Role.MEMBER)
    client.force_login(membership.user)
    response = client.get(reverse(url_name))
    assert response.status_code == 403
    html = response.content.decode()
    assert "Your role (member) does not allow this." in html
    assert 'href="/evidence/"' in html  # the app's navigation, so the member can go on from here
    assert reverse("accounts:dashboard") in html


def test_a_refused_page_is_logged_in_one_line_without_a_traceback(client):
    import io
    import logging

    [console] = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)
                 and any(type(f).__name__ == "ExpectedRefusalsWithoutTraceback" for f in h.filters)]
    membership = MembershipFactory(organization=OrganizationFactory(), role=Role.MEMBER)
    client.force_login(membership.user)
    stream = io.StringIO()
    previous = console.setStream(stream)
    try:
        assert client.get(reverse("accounts:agent_list")).status_code == 403
    finally:
        console.setStream(previous)
    assert "WARNING django.request Forbidden (Permission denied): /agents/" in stream.getvalue()
    assert "Traceback" not in stream.getvalue()
