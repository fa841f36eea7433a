"""manage.py sync_policies [--org SLUG]: sync the policy repository now, with progress on the terminal."""

from django.core.management.base import BaseCommand, CommandError

from cordum.common.errors import CordumError
from cordum.common.progress import TerminalProgress
from cordum.policies import gitrepo, services
from cordum.policies.models import PolicyRepository


class Command(BaseCommand):
    help = ("Fetch the organisation's policy repository and record, validate and (on the live branch) publish every "
            "new commit now, as the webhook or the poller would; progress is printed as it goes.")

    def add_arguments(self, parser):
        parser.add_argument("--org", help="organisation slug (default: every organisation with a repository)")

    def handle(self, *args, org=None, **options):
        repositories = PolicyRepository.objects.select_related("organization").order_by("organization__slug")
        if org:
            repositories = repositories.filter(organization__slug=org)
        repositories = list(repositories)
        if not repositories:
            raise CommandError(f"No policy repository{f' for {org!r}' if org else ''}.")
        failed = False
        for repository in repositories:
            label = f"sync {repository.organization.slug}/{repository.name}"
            progress = TerminalProgress(label, total=100, stream=self.stderr)
            try:
                result = services.sync_repository(repository=repository, on_progress=progress)
            except (gitrepo.GitFetchError, CordumError) as exc:
                progress.finish(message="failed")
                self.stderr.write(f"{label}: {exc}")
                failed = True
                continue
            if result.skipped:
                progress.finish(message="another sync is running; it will include the latest commits")
                continue
            progress.finish(100, "done")
            self.stdout.write(f"{label}: {_summary(result)}")
        if failed:
            raise CommandError("at least one repository failed to sync")


def _summary(result: services.SyncResult) -> str:
    parts = [f"{len(result.new_versions)} new version(s)"]
    if result.invalid_versions:
        parts.append(f"{len(result.invalid_versions)} invalid (never distributed): {', '.join(result.invalid_versions)}")
    parts.append(f"live {result.live_version or 'none'}")
    if result.published_bundle:
        parts.append(f"published bundle #{result.published_bundle}")
    if result.warning:
        parts.append(result.warning)
    return "; ".join(parts)
