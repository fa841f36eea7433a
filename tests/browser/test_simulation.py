"""An author simulates the proposed branch in real Chromium: queued progress, then the worker runs, then the matrix."""


import pytest
from playwright.sync_api import expect

from cordum.accounts.choices import Role
from cordum.simulation.models import Simulation
from tests.factories import MembershipFactory
from tests.simulation.conftest import recorded, sim_org, versions  # noqa: F401 - shared fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_author_picks_the_proposed_branch_runs_the_simulation_and_sees_progress_then_the_matrix(
    login, live_server, page, sim_org, versions, recorded  # noqa: F811
):
    from celery.contrib.testing.worker import start_worker

    from cordum.celery import app

    app.conf.task_always_eager = False  # queued on the real Redis broker; no worker yet
    author = MembershipFactory(organization=sim_org, role=Role.POLICY_AUTHOR)
    login(author.user.username)

    page.click("nav >> text=Simulations")
    page.click("text=New simulation")
    page.select_option("#id_candidate_version", label=next(
        o for o in page.locator("#id_candidate_version option").all_inner_texts() if "proposed@" in o))
    page.fill("#id_days", "7")
    page.click("#simulation-form button[type=submit]")

    # The task waits in the queue: the page shows the run's progress and polls for it.
    expect(page.locator("#sim-progress")).to_be_visible()
    expect(page.locator("#sim-status")).to_have_text("Queued")
    expect(page.locator("#sim-progress .progress")).to_be_visible()
    simulation = Simulation.objects.get()
    assert simulation.candidate_version == versions["candidate"]

    # A real worker picks it up; htmx polling swaps the report in without a reload.
    with start_worker(app, perform_ping_check=False, pool="solo", loglevel="WARNING", shutdown_timeout=30):
        expect(page.locator("#transition-matrix")).to_be_visible(timeout=60_000)
    expect(page.locator("#sim-status")).to_have_text("Completed")
    allow_row = page.locator("#transition-matrix tr[data-before=allow]")
    expect(allow_row.locator("td[data-after=allow] .count")).to_have_text("5")
    expect(allow_row.locator("td[data-after=deny] .count")).to_have_text("5")
    expect(page.locator("#transition-matrix tr[data-before=require_approval] td[data-after=require_approval] .count")
           ).to_have_text("4")
    expect(page.locator("#changed-by-rule")).to_contain_text("deny-env-reads")
    expect(page.locator("#dead-rules")).to_contain_text("deny-terraform-destroy")
    assert page.url.endswith(f"/simulations/{simulation.pk}/")  # the shareable URL


def test_a_member_gets_403_on_the_simulations_page(login, live_server, page, sim_org):  # noqa: F811
    member = MembershipFactory(organization=sim_org, role=Role.MEMBER)
    login(member.user.username)
    expect(page.locator("nav")).not_to_contain_text("Simulations")
    response = page.goto(f"{live_server.url}/simulations/")
    assert response.status == 403
