"""An organisation is never left without an admin: the last one can be neither removed nor demoted."""

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from cordum.accounts.models import Membership
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_the_last_admin_cannot_remove_their_own_membership_through_the_api(client):
    admin = MembershipFactory(role=Role.ADMIN)
    client.force_login(admin.user)
    response = client.delete(f"/api/v1/memberships/{admin.pk}/")
    assert response.status_code == 409 and "last admin" in response.json()["message"]
    assert Membership.objects.filter(pk=admin.pk).exists()


def test_the_last_admin_cannot_be_demoted_but_can_once_another_admin_exists(client):
    admin = MembershipFactory(role=Role.ADMIN)
    client.force_login(admin.user)
    refused = client.patch(f"/api/v1/memberships/{admin.pk}/", {"role": "member"}, content_type="application/json")
    assert refused.status_code == 409
    page = client.post(reverse("accounts:membership_update", args=[admin.pk]), {"role": "member"})
    assert page.status_code == 200 and "last admin" in page.content.decode()
    admin.refresh_from_db()
    assert admin.role == Role.ADMIN
    MembershipFactory(organization=admin.organization, role=Role.ADMIN)
    assert client.patch(f"/api/v1/memberships/{admin.pk}/", {"role": "member"},
                        content_type="application/json").status_code == 200
