"""Hook into bundle publication without touching the policies app: a new PolicyBundle row starts a rollout."""

import logging

from django.db.models.signals import post_save
from django.dispatch import receiver

log = logging.getLogger(__name__)


@receiver(post_save, sender="policies.PolicyBundle", dispatch_uid="rollouts_bundle_published")
def _bundle_published(sender, instance, created, raw=False, **kwargs):
    if not created or raw:
        return
    from cordum.rollouts.services import bundle_published

    bundle_published(bundle=instance)
