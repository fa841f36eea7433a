"""Rotate an organisation's signing key: create a new active key, then retire the old ones."""

from django.core.management.base import BaseCommand

from cordum.accounts.management.options import organization_arg
from cordum.policies import services


class Command(BaseCommand):
    help = ("Create a new signing key and retire the previously active ones (the current bundle is re-signed). "
            "With --keep-old both keys sign until you retire the old one in the UI or API.")

    def add_arguments(self, parser):
        parser.add_argument("--org", help="organisation slug (optional when there is only one)")
        parser.add_argument("--keep-old", action="store_true",
                            help="leave the old keys active (grace period while sidecars learn the new key)")

    def handle(self, *args, org=None, keep_old=False, **options):
        organization = organization_arg(org)
        from cordum.policies.choices import KeyStatus
        from cordum.policies.models import SigningKey

        old = list(SigningKey.objects.filter(organization=organization, status=KeyStatus.ACTIVE)
                   .values_list("key_id", flat=True))
        key = services.signing_key_rotate(organization=organization, retire_old=not keep_old)
        self.stdout.write(self.style.SUCCESS(f"New signing key {key.key_id} for {organization.slug}."))
        if old:
            self.stdout.write(("Still active: " if keep_old else "Retired: ") + ", ".join(old))
        self.stdout.write(f"Public key for sidecars' trusted_keys:\n    {key.key_id}: {key.public_key}")
