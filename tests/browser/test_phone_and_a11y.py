"""The main pages at 390 px (a phone) never scroll sideways, and axe-core finds no serious or critical
accessibility violation on them. The data is the demo organisation's, loaded small."""

from pathlib import Path

import pytest

from cordum.accounts.demo import DEMO_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def demo(celery_eager, tmp_path, settings):
    import importlib

    from django.db import transaction

    from cordum.accounts.management.commands.load_demo import DEMO_STEPS

    settings.STATE_DIR = tmp_path
    ctx = {"state_dir": tmp_path, "evidence_sessions_per_agent_day": 0.5, "stdout": open("/dev/null", "w")}
    for app in DEMO_STEPS:
        module = importlib.import_module(f"cordum.{app}.demo")
        with transaction.atomic():
            module.load(ctx)
    return ctx


def _pages(ctx) -> list[tuple[str, str]]:
    from cordum.approvals.models import ApprovalRequest
    from cordum.policies.demo import PROPOSED_BRANCH
    from cordum.policies.models import PolicyRepository
    from cordum.simulation.models import Simulation

    org = ctx["organization"]
    repo = PolicyRepository.objects.filter(organization=org).first()
    simulation = Simulation.objects.filter(organization=org).first()
    approval = ApprovalRequest.objects.filter(organization=org, state="pending").first()
    return [("admin", "/"), ("audrey", "/evidence/"), ("alice", "/approvals/"), ("mo", "/evidence/"),
            ("author", f"/policies/repositories/{repo.pk}/"), ("author", f"/simulations/{simulation.pk}/"),
            ("author", "/rollouts/"), ("author", f"/rollouts/plans/{repo.pk}/"), ("admin", f"/approvals/{approval.pk}/"),
            ("admin", "/members/"), ("author", f"/simulations/changes/{repo.pk}/{PROPOSED_BRANCH}")]


def _login(page, live_server, username):
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button:text-is('Log in')")
    page.wait_for_url(f"{live_server.url}/")


def test_main_pages_fit_a_phone_and_pass_the_accessibility_check(browser, live_server, demo, tmp_path):
    shots = tmp_path / "screenshots-390px"  # kept with the test's tmp dir for a person to look at
    shots.mkdir()
    problems = []
    for username, path in _pages(demo):
        context = browser.new_context(viewport=PHONE)
        page = context.new_page()
        page.set_default_timeout(20_000)
        _login(page, live_server, username)
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(shots / f"{username}{path.replace('/', '_')}.png"), full_page=True)
        if width > PHONE["width"]:
            problems.append(f"{path} as {username}: {width} px wide")
        page.add_script_tag(path=str(AXE))
        violations = page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".filter(v => ['serious', 'critical'].includes(v.impact))"
            ".map(v => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`)")
        problems += [f"{path} as {username}: {v}" for v in violations]
        context.close()
    assert problems == []


def test_mo_sees_his_own_agents_evidence_and_a_missing_page_is_the_products(browser, live_server, demo, tmp_path):
    from django.test import override_settings

    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    _login(page, live_server, "mo")  # member of Payments; owns cursor-web, an agent of the Web team
    page.goto(f"{live_server.url}/evidence/?agent=cursor-web")
    page.wait_for_load_state("networkidle")
    rows = page.locator("#evidence-rows tr, table tbody tr")
    assert rows.count() > 0 and "cursor-web" in page.content()
    page.goto(f"{live_server.url}/")
    assert "cursor-web" in page.locator("#own-agents").inner_text()
    with override_settings(DEBUG=False):
        response = page.goto(f"{live_server.url}/no/such/page/")
        assert response.status == 404
        assert "Not found" in page.locator("h1").inner_text() and "Back to the dashboard" in page.content()
        page.screenshot(path=str(tmp_path / "404-390px.png"))
    context.close()
