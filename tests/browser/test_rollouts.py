"""A policy author opens a rollout, promotes it, and watches the fleet counts change (real Chromium, real sidecars)."""


import pytest
from playwright.sync_api import expect

from cordum.accounts.choices import Role
from cordum.rollouts.models import Rollout
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory, agent_with_token
from tests.rollouts.conftest import FAST_STAGES, POLICY_V1, POLICY_V2, publish_version
from tests.rollouts.sidecars import FS_SERVER, SidecarProcess

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def running_fleet(live_server, celery_eager, tmp_path, settings):
    """An organisation on v1 with two real sidecars (payments, platform) heart-beating to the live server."""
    settings.CORDUM_LONG_POLL_MAX_SECONDS = 5  # long-polls end soon after the sidecars stop
    from cordum.policies.models import PolicyRepository
    from cordum.policies.services import signing_key_create
    from cordum.rollouts.services import rollout_plan_set

    if not FS_SERVER.exists():
        pytest.fail(f"{FS_SERVER} missing: run `npm install` (make test does)")
    org = OrganizationFactory(slug="acme-browser", name="Acme")
    key = signing_key_create(organization=org)
    repository = PolicyRepository.objects.create(organization=org, name="policies", url="/nonexistent")
    rollout_plan_set(repository=repository, actor=None, stages=FAST_STAGES)
    publish_version(repository, POLICY_V1, "v1.0.0")
    sidecars = []
    for name, slug in (("claude-pay", "payments"), ("cursor-plat", "platform")):
        team = TeamFactory(organization=org, slug=slug, name=slug.title())
        _agent, issued = agent_with_token(organization=org, name=name, team=team)
        sidecars.append(SidecarProcess(name=name, control_plane=live_server.url, token=issued.plaintext,
                                       trusted_keys={key.key_id: key.public_key}, workdir=tmp_path).start())
    try:
        yield org, repository
    finally:
        for sidecar in sidecars:
            sidecar.stop()


def test_author_promotes_a_rollout_and_sees_the_fleet_counts_change(login, live_server, running_fleet):
    org, repository = running_fleet
    author = MembershipFactory(organization=org, role=Role.POLICY_AUTHOR).user
    v2 = publish_version(repository, POLICY_V2, "v2.0.0").manifest["version"]
    rollout = Rollout.objects.get()

    page = login(author.username)
    page.click("nav >> text=Rollouts")
    page.click(f"text=#{rollout.pk}")
    summary = page.locator("#rollout-live [data-testid=fleet-summary]")
    expect(page.locator("[data-testid=rollout-stage]")).to_contain_text("shadow")
    expect(summary).to_have_text(f"0 of 2 sidecars enforce {v2}", timeout=30_000)

    page.click("[data-testid=promote]")  # shadow -> canary (payments)
    expect(page.locator("[data-testid=rollout-stage]")).to_contain_text("canary")
    expect(summary).to_have_text(f"1 of 2 sidecars enforce {v2}", timeout=30_000)  # htmx refresh, heartbeats

    page.click("[data-testid=promote]")  # canary -> all (completes)
    expect(page.locator("[data-testid=rollout-state]")).to_have_text("Completed")
    expect(summary).to_have_text(f"2 of 2 sidecars enforce {v2}", timeout=30_000)

    page.click("nav >> text=Fleet")
    expect(page.locator("[data-testid=fleet-summary]")).to_have_text(f"2 of 2 sidecars enforce {v2}")
    expect(page.locator("tr[data-version]")).to_have_count(2)


def test_the_rollout_stepper_creates_a_plan_that_starts(login, live_server, celery_eager):
    from cordum.policies.models import PolicyRepository
    from cordum.policies.services import signing_key_create

    org = OrganizationFactory(slug="acme-stepper", name="Acme")
    signing_key_create(organization=org)
    TeamFactory(organization=org, slug="payments", name="Payments")
    repository = PolicyRepository.objects.create(organization=org, name="policies", url="/nonexistent")
    publish_version(repository, POLICY_V1, "v1.0.0")
    author = MembershipFactory(organization=org, role=Role.POLICY_AUTHOR).user

    page = login(author.username)
    page.goto(f"{live_server.url}/rollouts/plans/{repository.pk}/")
    expect(page.locator("fieldset.stage")).to_have_count(3)  # shadow, canary, all to start from
    canary = page.locator("[data-testid=stage-2]")
    canary.get_by_label("Payments").check()
    canary.locator("input[name$=percent]").fill("0")
    page.click("text=Add a stage")
    expect(page.locator("fieldset.stage")).to_have_count(4)
    page.locator("[data-testid=stage-4]").get_by_label("Remove this stage").check()
    page.click("button:text-is('Save plan')")
    expect(page.locator(".messages")).to_contain_text("Rollout plan saved")

    publish_version(repository, POLICY_V2, "v2.0.0")

    rollout = Rollout.objects.get(repository=repository)
    assert [s["kind"] for s in rollout.stages] == ["shadow", "canary", "all"]
    assert rollout.stages[1]["teams"] == ["payments"]
    page.goto(f"{live_server.url}/rollouts/{rollout.pk}/")
    expect(page.locator("[data-testid=rollout-stage]")).to_contain_text("shadow")
