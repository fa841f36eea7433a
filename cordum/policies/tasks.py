"""Celery tasks: thin wrappers that take ids and call the sync service."""

import logging

from celery import shared_task

from cordum.policies.gitrepo import GitFetchError

log = logging.getLogger(__name__)


@shared_task(
    name="cordum.policies.tasks.repository_sync_task",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(GitFetchError,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def repository_sync_task(self, repository_id: int) -> dict:
    from cordum.policies.models import PolicyRepository
    from cordum.policies.services import sync_repository

    repository = PolicyRepository.objects.filter(pk=repository_id).first()
    if repository is None or not repository.is_enabled:
        return {"skipped": True}
    if self.request.retries:
        PolicyRepository.objects.filter(pk=repository_id).update(
            sync_message=f"Retry {self.request.retries}/{self.max_retries} after: {repository.last_error[:200]}"
        )
    result = sync_repository(repository=repository)
    if not result.skipped:
        after_sync_enqueue(repository_id)
    return {"skipped": result.skipped, "new": result.new_versions, "invalid": result.invalid_versions,
            "live": result.live_version, "bundle": result.published_bundle}


def after_sync_enqueue(repository_id: int) -> None:
    """Enqueue settings.CORDUM_AFTER_SYNC_TASKS by name (a skipped sync leaves it to the one that ran)."""
    from celery import current_app
    from django.conf import settings

    for name in getattr(settings, "CORDUM_AFTER_SYNC_TASKS", ()):
        current_app.signature(name, args=(repository_id,)).delay()


@shared_task(name="cordum.policies.tasks.repositories_poll_task", acks_late=True)
def repositories_poll_task() -> int:
    """Celery beat: enqueue a sync of every enabled repository (catches pushes whose webhook was missed)."""
    from cordum.policies.models import PolicyRepository

    ids = list(PolicyRepository.objects.filter(is_enabled=True).values_list("pk", flat=True))
    for pk in ids:
        repository_sync_task.delay(pk)
    return len(ids)
