"""Single sign-on through a real OpenID provider (oidc-provider from npm), in real Chromium."""

import json
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect

from cordum.accounts.choices import Role
from cordum.accounts.models import Membership, SingleSignOn
from cordum.common import crypto
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = {
    "ines": {"email": "ines@acme.test", "email_verified": True, "groups": ["payments-devs", "staff"],
             "given_name": "Ines", "family_name": "Ortega"},
    "oscar": {"email": "oscar@elsewhere.test", "email_verified": True, "groups": ["payments-devs"]},
    "nadia": {"email": "nadia@acme.test", "email_verified": True, "groups": ["marketing"]},
}


@pytest.fixture
def identity_provider(live_server):
    client = {"client_id": "cordum-test", "client_secret": "provider-secret-1",
              "redirect_uris": [f"{live_server.url}/sso/acme/callback/"]}
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "OIDC_CLIENT": json.dumps(client),
           "OIDC_ACCOUNTS": json.dumps(ACCOUNTS)}
    proc = subprocess.Popen(["node", str(REPO / "tests" / "sso" / "oidc_provider.mjs")], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        issuer = json.loads(proc.stdout.readline())["issuer"]
        yield {"issuer": issuer, **client}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def acme(identity_provider):
    org = OrganizationFactory(name="Acme", slug="acme")
    TeamFactory(organization=org, name="Payments", slug="payments")
    SingleSignOn.objects.create(
        organization=org, issuer=identity_provider["issuer"], client_id=identity_provider["client_id"],
        client_secret_encrypted=crypto.encrypt(identity_provider["client_secret"]), allowed_domains="acme.test",
        group_mappings=[{"group": "payments-devs", "role": Role.REVIEWER, "teams": ["payments"]}],
        password_login=False,
    )
    return org


def _sign_in(page, live_server, login: str):
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_org", "acme")
    page.click("text=Sign in with SSO")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "anything")
    page.click("button[type=submit]")
    consent = page.locator("button:has-text('Continue')")
    if consent.count():
        consent.click()


def test_an_oidc_login_creates_the_member_in_the_team_and_role_its_groups_map_to(page, live_server, acme):
    _sign_in(page, live_server, "ines")

    page.wait_for_url(f"{live_server.url}/")
    expect(page.locator(".who")).to_contain_text("Acme")
    membership = Membership.objects.get(organization=acme, user__email="ines@acme.test")
    assert membership.role == Role.REVIEWER
    assert list(membership.teams.values_list("slug", flat=True)) == ["payments"]
    assert not membership.user.has_usable_password()


def test_people_outside_the_allowed_domains_or_mapped_groups_are_refused(page, live_server, acme):
    _sign_in(page, live_server, "oscar")
    expect(page.locator("#sso-error")).to_contain_text("elsewhere.test may not sign in")
    page.context.clear_cookies()
    _sign_in(page, live_server, "nadia")
    expect(page.locator("#sso-error")).to_contain_text("no role")
    assert not Membership.objects.filter(organization=acme).exists()


def test_password_login_is_refused_where_the_organisation_requires_sso(page, live_server, acme):
    member = MembershipFactory(organization=acme, role=Role.MEMBER)
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", member.user.username)
    page.fill("#id_password", "pw-for-tests-1")
    page.click("button:text-is('Log in')")
    expect(page.locator(".errorlist").first).to_contain_text("signs in with single sign-on")
