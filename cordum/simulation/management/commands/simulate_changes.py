"""manage.py simulate_changes [--org SLUG]: refresh and simulate every branch and pull request head now, with
progress on the terminal, and print each change's result and gate verdicts."""

from django.core.management.base import BaseCommand, CommandError

from cordum.common.progress import TerminalProgress
from cordum.policies.models import PolicyRepository
from cordum.simulation import selectors, services


class Command(BaseCommand):
    help = ("Refresh the policy changes (every branch and pull/merge request head) of the organisation's synced "
            "repository and run their simulations now, as the worker would after a sync; exit 1 when a change "
            "fails its gates.")

    def add_arguments(self, parser):
        parser.add_argument("--org", help="organisation slug (default: every organisation with a repository)")

    def handle(self, *args, org=None, **options):
        repositories = PolicyRepository.objects.select_related("organization").order_by("organization__slug")
        if org:
            repositories = repositories.filter(organization__slug=org)
        repositories = list(repositories)
        if not repositories:
            raise CommandError(f"No policy repository{f' for {org!r}' if org else ''}.")
        failing = []
        for repository in repositories:
            for change in services.policy_changes_refresh(repository=repository):
                label = f"{repository.organization.slug}/{repository.name} {change.ref}"
                simulation = change.simulation
                if simulation is not None and not simulation.is_finished:
                    progress = TerminalProgress(f"simulate {label}", unit="calls", stream=self.stderr)
                    simulation = services.simulation_run(simulation=simulation, on_progress=progress)
                    progress.finish(simulation.rows_processed, simulation.status)
                    change.simulation = simulation
                line = _line(change)
                self.stdout.write(f"{label}: {line}")
                if "gates fail" in line or line.startswith(("invalid", "simulation failed")):
                    failing.append(label)
        if failing:
            raise CommandError(f"{len(failing)} change(s) fail: {', '.join(failing)}")


def _line(change) -> str:
    outcome = services.policy_change_outcome(change=change)
    if outcome is None:
        return "no policy version at this head yet (sync first)"
    if change.simulation is not None and change.simulation.status == "completed":
        gates = selectors.policy_change_gates(change=change)
        details = "; ".join(f"{v['gate']}: {v['detail']}" for v in gates["verdicts"] if not v["passed"])
        return outcome["description"] + (f" ({details})" if details else "")
    return outcome["description"]
