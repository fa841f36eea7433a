"""Run the rollout guardrails once (what Celery beat does every 30 s), e.g. in the demo, which runs no beat."""

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Check guardrails and soak times of every running rollout once: halt, promote or complete as due."

    def handle(self, *args, **options):
        from cordum.rollouts.services import rollouts_check

        counts = rollouts_check()
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
