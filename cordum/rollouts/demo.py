"""Demo: a rollout plan for the demo policy repository (idempotent).

Shadow for everyone (2 min) -> enforce for the Payments team (5 min) -> enforce for all. Manual promotion,
so the demo shows each stage; `manage.py merge_demo_branch` merges the demo repo's proposed branch and the
rollout starts by this plan.
"""

from cordum.rollouts.models import RolloutPlan
from cordum.rollouts.services import rollout_plan_set

DEMO_STAGES = [
    {"name": "shadow", "kind": "shadow", "min_soak_seconds": 120},
    {"name": "canary-payments", "kind": "canary", "teams": ["payments"], "min_soak_seconds": 300},
    {"name": "all", "kind": "all", "min_soak_seconds": 0},
]


def load(ctx: dict) -> None:
    repository = ctx.get("policy_repository")
    out = ctx.get("stdout")
    if repository is None:
        if out is not None:
            out.write("  no demo policy repository: rollout plan skipped")
        return
    if not RolloutPlan.objects.filter(repository=repository).exists():
        admin = ctx.get("users", {}).get("admin")
        rollout_plan_set(repository=repository, actor=admin, stages=DEMO_STAGES, auto_start=True,
                         auto_promote=False, max_new_restriction_rate=0.05, forecast_margin=0.05, min_calls=20)
    ctx["rollout_plan"] = RolloutPlan.objects.get(repository=repository)
    if out is not None:
        out.write("  rollout plan: shadow -> canary-payments -> all; `manage.py merge_demo_branch` merges the "
                  "proposed branch and starts a rollout (watch it under Rollouts)")
