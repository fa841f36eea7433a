"""Rollouts and the fleet.

- Fleet: every sidecar's latest heartbeat (`SidecarInstance`, a mutable status table — not evidence),
  with stale and old-version flags.
- Rollouts: a plan per policy repository (`RolloutPlan`) stages each new live version across the fleet
  (shadow → canary → all, with soak times and guardrails); `Rollout` tracks one version's progress and
  `RolloutEvent` its history. `selectors.rollout_bundles_for_agent` decides which bundle (and shadow bundle)
  each agent gets while a rollout runs; the bundle API of `cordum.policies` calls it.
"""

from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    name = "cordum.rollouts"
    label = "rollouts"
    verbose_name = "Rollouts and fleet"

    def ready(self):
        from cordum.common import metrics
        from cordum.rollouts import signals  # noqa: F401  (hooks into bundle publishing)
        from cordum.rollouts.metrics import collect

        metrics.register(collect)  # fleet health on GET /metrics
