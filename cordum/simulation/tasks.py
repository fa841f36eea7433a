"""Thin Celery wrappers: take ids, call a service."""

from celery import shared_task

from cordum.simulation.forge import ForgeError
from cordum.simulation.models import Simulation
from cordum.simulation.services import simulation_run


@shared_task(acks_late=True, reject_on_worker_lost=True)
def simulation_run_task(simulation_id: int) -> str:
    simulation = Simulation.objects.filter(pk=simulation_id).first()
    if simulation is None:
        return "missing"
    simulation = simulation_run(simulation=simulation)
    if simulation.cache_key:  # a change's simulation: post its result to the changes that carry it
        from cordum.simulation.models import PolicyChange
        from cordum.simulation.services import policy_changes_post_enqueue

        policy_changes_post_enqueue(change_ids=list(PolicyChange.objects.filter(
            simulation=simulation).exclude(repository__forge_repository="").values_list("pk", flat=True)))
    return simulation.status


@shared_task(name="cordum.simulation.tasks.policy_changes_refresh_task", acks_late=True, reject_on_worker_lost=True)
def policy_changes_refresh_task(repository_id: int) -> int:
    """After a sync (settings.CORDUM_AFTER_SYNC_TASKS): refresh and simulate every branch and request head."""
    from cordum.policies.models import PolicyRepository
    from cordum.simulation.services import policy_changes_refresh

    repository = PolicyRepository.objects.filter(pk=repository_id).select_related("organization").first()
    if repository is None:
        return 0
    return len(policy_changes_refresh(repository=repository))


@shared_task(name="cordum.simulation.tasks.policy_change_post_task", acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(ForgeError,), retry_backoff=5, retry_backoff_max=300, retry_jitter=True, max_retries=5)
def policy_change_post_task(change_id: int) -> str:
    """Post a change's result (commit status, pull request comment) to its forge; retried when it refuses."""
    from cordum.simulation.models import PolicyChange
    from cordum.simulation.services import policy_change_post

    change = PolicyChange.objects.filter(pk=change_id).select_related(
        "repository", "version", "simulation", "simulation__baseline_version").first()
    if change is None:
        return "missing"
    return policy_change_post(change=change)
