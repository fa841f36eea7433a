"""Journeys an admin and a member click through, in real Chromium."""

import re

import pytest
from playwright.sync_api import expect

from cordum.accounts.choices import Role
from cordum.accounts.models import AgentToken, Team
from cordum.common.crypto import token_digest
from tests.factories import MembershipFactory, TeamFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_logs_in_creates_a_team_and_an_agent_and_sees_its_token_once(login, live_server):
    membership = MembershipFactory(role=Role.ADMIN)
    page = login(membership.user.username)
    expect(page.locator("h1")).to_contain_text(membership.organization.name)

    page.click("text=Teams")
    page.click("text=New team")
    page.fill("#id_name", "Payments")
    page.click("main button[type=submit]")
    expect(page.locator("table")).to_contain_text("Payments")
    assert Team.objects.filter(organization=membership.organization, slug="payments").exists()

    page.click("nav >> text=Agents")
    page.click("text=New agent")
    page.fill("#id_name", "claude-code-browser")
    page.select_option("#id_kind", "claude-code")
    page.select_option("#id_team", label="Payments")
    page.click("main button[type=submit]")
    token = page.locator("#agent-token").inner_text().strip()
    assert re.fullmatch(r"cdm_agent_[\w-]+", token)
    assert AgentToken.objects.filter(digest=token_digest(token), agent__name="claude-code-browser").exists()

    page.click("text=Done")
    expect(page.locator("#agent-rows")).to_contain_text("claude-code-browser")
    assert token not in page.content()  # shown once, never again


def test_agent_filters_update_the_list_in_place(login, live_server):
    from tests.factories import agent_with_token

    membership = MembershipFactory(role=Role.ADMIN)
    team = TeamFactory(organization=membership.organization, name="Web", slug="web")
    agent_with_token(organization=membership.organization, name="cursor-web", kind="cursor", team=team)
    agent_with_token(organization=membership.organization, name="devin-ops", kind="devin")
    page = login(membership.user.username)
    page.goto(f"{live_server.url}/agents/")
    page.select_option("select[name=kind]", "cursor")
    expect(page.locator("#agent-rows")).not_to_contain_text("devin-ops")
    expect(page.locator("#agent-rows")).to_contain_text("cursor-web")


def test_member_gets_403_on_the_agents_admin_page(login, live_server, page):
    membership = MembershipFactory(role=Role.MEMBER)
    login(membership.user.username)
    expect(page.locator("nav")).not_to_contain_text("Agents")
    response = page.goto(f"{live_server.url}/agents/")
    assert response.status == 403


def test_an_invited_member_sets_a_password_from_the_emailed_link_and_logs_in(login, live_server, page, mailoutbox):
    admin = MembershipFactory(role=Role.ADMIN)
    login(admin.user.username)
    page.click("nav >> text=Members")
    page.click("text=Add member")
    page.fill("#id_username", "invited-ines")
    page.fill("#id_email", "ines@example.com")
    page.click("main button[type=submit]")
    expect(page.locator("table")).to_contain_text("invited")
    link = re.search(r"https?://\S+/invite/\S+/", mailoutbox[-1].body).group(0)
    path = link.split("/invite/", 1)[1]
    page.click("header >> text=Log out")

    page.goto(f"{live_server.url}/invite/{path}")
    page.fill("#id_new_password1", "ines-passphrase-2026")
    page.fill("#id_new_password2", "ines-passphrase-2026")
    page.click("main button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("Password set")
    page.fill("#id_username", "invited-ines")
    page.fill("#id_password", "ines-passphrase-2026")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    expect(page.locator(".who")).to_contain_text("invited-ines")
