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
