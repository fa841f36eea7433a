"""Thin Celery wrappers: take ids, call a service."""

from celery import shared_task

from cordum.simulation.models import Simulation
from cordum.simulation.services import simulation_run


@shared_task(acks_late=True, reject_on_worker_lost=True)
def simulation_run_task(simulation_id: int) -> str:
    simulation = Simulation.objects.filter(pk=simulation_id).first()
    if simulation is None:
        return "missing"
    return simulation_run(simulation=simulation).status


@shared_task(name="cordum.simulation.tasks.policy_changes_refresh_task", acks_late=True, reject_on_worker_lost=True)
def policy_changes_refresh_task(repository_id: int) -> int:
    """After a sync (settings.CORDUM_AFTER_SYNC_TASKS): refresh and simulate every branch and request head."""
    from cordum.policies.models import PolicyRepository
    from cordum.simulation.services import policy_changes_refresh

    repository = PolicyRepository.objects.filter(pk=repository_id).select_related("organization").first()
    if repository is None:
        return 0
    return len(policy_changes_refresh(repository=repository))
