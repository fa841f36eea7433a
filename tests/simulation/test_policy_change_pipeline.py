"""The whole path with a real Celery worker (Redis broker): git push -> signed webhook -> sync -> change refresh
-> simulation of the pushed head. A re-push of the same policy content runs no new simulation."""

import pytest

from cordum.common.notify import wait_for
from cordum.simulation import services
from cordum.simulation.models import PolicyChange, Simulation
from tests.policies.conftest import push_payload, signed_headers
from tests.simulation.data import CANDIDATE_POLICY, EXPECTED_MATRIX

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _push_webhook(client, repository, ref):
    body = push_payload(f"refs/heads/{ref}")
    response = client.post(f"/hooks/git/{repository.pk}", body, content_type="application/json",
                           **signed_headers(body))
    assert response.status_code == 202


def _completed_change(repository, ref, *, head):
    """Wait for the refresh that saw `head` on `ref`, then for its simulation to finish."""
    def refreshed():
        return PolicyChange.objects.filter(repository=repository, ref=ref, head_sha=head).select_related(
            "simulation").first()

    change = wait_for(services.change_channel(repository.pk), 60, refreshed)
    assert change is not None and change.simulation is not None, "the push was never refreshed as a change"
    pk = change.simulation_id

    def finished():
        simulation = Simulation.objects.get(pk=pk)
        return simulation if simulation.is_finished else None

    simulation = wait_for(services.simulation_channel(pk), 60, finished)
    assert simulation is not None and simulation.status == "completed", simulation and simulation.error
    return change, simulation


def test_a_push_webhook_simulates_the_branch_and_a_re_push_of_the_same_content_runs_nothing_new(
        celery_worker, client, git_workspace, git_repository, recorded):
    head = git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    _push_webhook(client, git_repository, "deny-env")
    _change, first = _completed_change(git_repository, "deny-env", head=head)
    assert first.report["matrix"] == EXPECTED_MATRIX and first.days == 7

    # The same content pushed again as another commit on another branch (a fork's copy, a rebase): cached.
    again = git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads (rebased)", branch="deny-env-rebased")
    _push_webhook(client, git_repository, "deny-env-rebased")
    change, second = _completed_change(git_repository, "deny-env-rebased", head=again)
    assert second.pk == first.pk
    assert Simulation.objects.count() == 1
    assert Simulation.objects.get(pk=first.pk).started_at == first.started_at  # never run a second time
