"""manage.py retry_quarantined_evidence [--org SLUG] [--list]: show quarantined evidence batches, retry them now."""

from django.core.management.base import BaseCommand, CommandError

from cordum.accounts.models import Organization
from cordum.decisions import selectors, services


class Command(BaseCommand):
    help = ("List evidence batches the database refused (quarantined) and put them back in the writer's queue "
            "now, without waiting for the automatic retry's backoff.")

    def add_arguments(self, parser):
        parser.add_argument("--org", help="organisation slug (default: every organisation)")
        parser.add_argument("--list", action="store_true", help="only list them; retry nothing")

    def handle(self, *args, **options):
        orgs = Organization.objects.order_by("slug")
        if options["org"]:
            orgs = orgs.filter(slug=options["org"])
            if not orgs.exists():
                raise CommandError(f"No organisation with slug {options['org']!r}.")
        for org in orgs:
            batches = list(selectors.evidence_quarantine_list(organization_id=org.pk))
            if not batches:
                continue
            records = sum(b.record_count for b in batches)
            self.stdout.write(f"{org.slug}: {len(batches)} quarantined batch(es), {records} record(s)")
            for b in batches:
                retry = b.retry_at.isoformat() if b.retry_at else "only by hand"
                self.stdout.write(f"  batch {b.pk}: {b.record_count} record(s), {b.attempts} attempt(s), "
                                  f"next retry {retry}: {b.error.splitlines()[0] if b.error else ''}")
            if not options["list"]:
                released = services.evidence_quarantine_release(organization_id=org.pk, due_only=False)
                self.stdout.write(f"{org.slug}: {released.get(org.pk, 0)} batch(es) queued for retry")
