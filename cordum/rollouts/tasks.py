"""Celery wrappers (thin): guardrails and soak times of running rollouts, every 30 s by beat."""

from celery import shared_task

from cordum.rollouts import services


@shared_task(name="cordum.rollouts.tasks.rollouts_check_task", acks_late=True, task_reject_on_worker_lost=True)
def rollouts_check_task() -> dict:
    return services.rollouts_check()
