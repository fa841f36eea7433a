"""An admin configures single sign-on; the client secret is stored encrypted and never shown again."""

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from cordum.accounts.models import SingleSignOn
from tests.factories import MembershipFactory, TeamFactory

pytestmark = pytest.mark.django_db

FORM = {"enabled": "on", "issuer": "https://login.acme.test", "client_id": "cordum", "client_secret": "shh-123",
        "allowed_domains": "acme.test", "groups_claim": "groups", "default_role": "", "password_login": "on",
        "group_mappings": "payments-devs: reviewer payments\nauditors: auditor"}


def test_sso_settings_store_the_secret_encrypted_and_keep_it_when_left_empty(client):
    admin = MembershipFactory(role=Role.ADMIN)
    TeamFactory(organization=admin.organization, slug="payments")
    client.force_login(admin.user)

    assert client.post(reverse("accounts:sso_settings"), FORM).status_code == 302
    config = SingleSignOn.objects.get(organization=admin.organization)
    assert "shh-123" not in config.client_secret_encrypted and config.client_secret == "shh-123"
    assert config.group_mappings == [{"group": "payments-devs", "role": "reviewer", "teams": ["payments"]},
                                     {"group": "auditors", "role": "auditor", "teams": []}]
    page = client.get(reverse("accounts:sso_settings")).content.decode()
    assert "shh-123" not in page and "payments-devs: reviewer payments" in page

    client.post(reverse("accounts:sso_settings"), {**FORM, "client_secret": ""})
    config.refresh_from_db()
    assert config.client_secret == "shh-123"


def test_a_mapping_to_an_unknown_team_or_role_is_refused_naming_the_line(client):
    admin = MembershipFactory(role=Role.ADMIN)
    client.force_login(admin.user)
    response = client.post(reverse("accounts:sso_settings"), {**FORM, "group_mappings": "devs: wizard nowhere"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "role must be one of" in html and "no team nowhere" in html
    assert not SingleSignOn.objects.exists()


def test_a_provider_cannot_vouch_for_an_operator_or_another_organisations_member():
    from cordum.accounts.sso import sso_member_from_claims
    from cordum.common.errors import CordumError
    from tests.factories import OrganizationFactory, UserFactory

    admin = MembershipFactory(role=Role.ADMIN)
    config = SingleSignOn.objects.create(organization=admin.organization, issuer="https://login.acme.test",
                                         client_id="c", default_role=Role.MEMBER)
    UserFactory(username="root", email="root@acme.test", is_superuser=True)
    MembershipFactory(organization=OrganizationFactory(), user=UserFactory(email="bob@acme.test"))
    for email in ("root@acme.test", "bob@acme.test"):
        with pytest.raises(CordumError):
            sso_member_from_claims(config=config, claims={"email": email, "email_verified": True})
    user, membership = sso_member_from_claims(config=config, claims={"email": "new@acme.test", "email_verified": True})
    assert membership.role == Role.MEMBER and not user.has_usable_password()
