"""manage.py verify_audit [--org SLUG]: prove the evidence hash chain; exit 1 at the first broken link."""

import sys

from django.core.management.base import BaseCommand, CommandError

from cordum.accounts.models import Organization
from cordum.common.progress import TerminalProgress
from cordum.decisions.audit import verify_chain


class Command(BaseCommand):
    help = "Verify the per-organisation evidence hash chain and report the first broken link."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="organisation slug (default: every organisation)")

    def handle(self, *args, **options):
        orgs = Organization.objects.order_by("slug")
        if options["org"]:
            orgs = orgs.filter(slug=options["org"])
            if not orgs.exists():
                raise CommandError(f"No organisation with slug {options['org']!r}.")
        broken = False
        for org in orgs:
            progress = TerminalProgress(f"{org.slug}: verifying", unit="records", stream=self.stderr)
            result = verify_chain(organization_id=org.pk, on_progress=progress)
            if progress.done:
                progress.finish()
            if result.ok:
                start = (f" (resumed after retention checkpoint #{result.resumed_from_checkpoint})"
                         if result.resumed_from_checkpoint else "")
                self.stdout.write(f"{org.slug}: OK, {result.checked} records verified{start}")
            else:
                broken = True
                self.stdout.write(
                    f"{org.slug}: BROKEN at seq {result.broken_seq}"
                    f"{f' (record id {result.broken_id})' if result.broken_id else ''}: {result.problem}"
                )
        if broken:
            sys.exit(1)
