"""The demo runs Celery beat's schedule itself (eager Celery has no beat), so its guardrails get checked."""

from datetime import timedelta

import pytest

from cordum.accounts.management.commands.run_demo import EagerBeat
from cordum.rollouts.models import Rollout
from tests.rollouts.conftest import POLICY_V1, POLICY_V2, publish_version

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_the_demo_beat_checks_a_running_rollouts_guardrail_on_schedule(repository, plan, fleet, celery_eager):
    publish_version(repository, POLICY_V1, "v1.0.0")
    publish_version(repository, POLICY_V2, "v1.1.0")
    rollout = Rollout.objects.get()
    assert rollout.guardrail in (None, {})  # "not checked yet"
    clock = Clock()
    beat = EagerBeat({"rollouts-guardrails": {"task": "cordum.rollouts.tasks.rollouts_check_task",
                                              "schedule": timedelta(seconds=30)}}, now=clock)

    assert beat.tick() == []  # not due before its first interval (capped at 5 s after start)
    clock.t += 5
    assert beat.tick() == ["rollouts-guardrails"]
    rollout.refresh_from_db()
    assert rollout.guardrail and rollout.guardrail.get("state")
    clock.t += 10
    assert beat.tick() == []  # next one 30 s later
    clock.t += 20
    assert beat.tick() == ["rollouts-guardrails"]
