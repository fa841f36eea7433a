"""Demo: one finished simulation of the proposed branch's head over the demo's recorded week. Idempotent."""

from cordum.policies.models import PolicyVersion
from cordum.simulation import services
from cordum.simulation.choices import Baseline
from cordum.simulation.models import Simulation


def proposed_version(repository) -> PolicyVersion | None:
    from cordum.policies.demo import PROPOSED_BRANCH

    for version in PolicyVersion.objects.filter(repository=repository, is_valid=True).order_by("-committed_at"):
        if PROPOSED_BRANCH in (version.branches or []):
            return version
    return None


def load(ctx: dict) -> None:
    repository = ctx.get("policy_repository")
    if repository is None:
        return
    version = proposed_version(repository)
    if version is None or Simulation.objects.filter(organization=ctx["organization"], candidate_version=version,
                                                    status="completed").exists():
        return
    simulation = services.simulation_create(organization=ctx["organization"], user=ctx["users"].get("author"),
                                            candidate_version_id=version.pk, days=7, enqueue=False,
                                            baseline=Baseline.LIVE if ctx.get("live_policy_version") else
                                            Baseline.RECORDED)
    simulation = services.simulation_run(simulation=simulation)
    ctx["simulation"] = simulation
    out = ctx.get("stdout")
    if out is not None and simulation.report:
        summary = simulation.report["summary"]
        out.write(f"  simulation #{simulation.pk}: {version.version} over {summary['total_calls']} recorded calls, "
                  f"{summary['changed_calls']} would change ({summary['newly_denied']} newly denied)")
