"""Demo: the proposed branch's head simulated over the demo's recorded week, against the recorded decisions and
against the live version (so the list and the compare page have something to show). Idempotent."""

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
    _load_changes(repository, ctx.get("stdout"))
    version = proposed_version(repository)
    if version is None:
        return
    baselines = [Baseline.RECORDED] + ([Baseline.LIVE] if ctx.get("live_policy_version") else [])
    out = ctx.get("stdout")
    for baseline in baselines:
        if Simulation.objects.filter(organization=ctx["organization"], candidate_version=version, baseline=baseline,
                                     status="completed").exists():
            continue
        simulation = services.simulation_create(organization=ctx["organization"], user=ctx["users"].get("author"),
                                                candidate_version_id=version.pk, days=7, baseline=baseline,
                                                enqueue=False)
        simulation = services.simulation_run(simulation=simulation)
        if out is not None and simulation.report:
            summary = simulation.report["summary"]
            out.write(f"  simulation #{simulation.pk}: {version.version} vs {baseline.label.lower()}: "
                      f"{summary['total_calls']} recorded calls, {summary['changed_calls']} would change "
                      f"({summary['newly_denied']} newly denied)")


def _load_changes(repository, out) -> None:
    """Each branch head as a change (its page: diff, simulation, gates), simulated inline as sync would have."""
    for change in services.policy_changes_refresh(repository=repository):
        simulation = change.simulation
        if simulation is not None and not simulation.is_finished:
            simulation = services.simulation_run(simulation=simulation)
        if out is not None:
            state = simulation.status if simulation is not None else "not simulated"
            out.write(f"  change {change.ref}: {state}")
