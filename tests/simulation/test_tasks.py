"""The Celery task on a real worker (Redis broker): queued -> completed, progress written to the row."""

import pytest

from cordum.simulation import services
from cordum.simulation.models import Simulation
from cordum.simulation.tasks import simulation_run_task
from tests.simulation.data import EXPECTED_MATRIX

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_real_worker_runs_the_simulation_task_to_completion(celery_worker, sim_org, versions, recorded):
    simulation = services.simulation_create(organization=sim_org, user=None, enqueue=False,
                                            candidate_version_id=versions["candidate"].pk)
    assert simulation.status == "queued"
    from cordum.common.notify import wait_for

    simulation_run_task.delay(simulation.pk)
    assert wait_for(services.simulation_channel(simulation.pk), 60,
                    lambda: Simulation.objects.get(pk=simulation.pk).is_finished)
    simulation = Simulation.objects.get(pk=simulation.pk)
    assert simulation.status == "completed"
    assert simulation.progress == 1.0 and simulation.rows_processed == 15
    assert simulation.report["matrix"] == EXPECTED_MATRIX


def test_creating_a_simulation_enqueues_it_after_commit_and_wakes_long_polls(celery_worker, sim_org, versions,
                                                                              recorded):
    from cordum.common.notify import wait_for

    simulation = services.simulation_create(organization=sim_org, user=None,
                                            candidate_version_id=versions["candidate"].pk)

    def finished():
        simulation.refresh_from_db()
        return simulation.is_finished

    assert wait_for(services.simulation_channel(simulation.pk), 60, finished)
    assert simulation.status == "completed"


def test_the_api_long_polls_until_the_report_is_ready(celery_worker, client, sim_org, versions, recorded):
    from cordum.accounts.choices import Role
    from tests.factories import MembershipFactory

    client.force_login(MembershipFactory(organization=sim_org, role=Role.POLICY_AUTHOR).user)
    created = client.post("/api/v1/simulations", {"candidate_version_id": versions["candidate"].pk},
                          content_type="application/json")
    assert created.status_code == 202
    body = client.get(f"/api/v1/simulations/{created.json()['id']}?wait=60").json()
    assert body["status"] == "completed"
    assert body["report"]["summary"]["newly_denied"] == 5
