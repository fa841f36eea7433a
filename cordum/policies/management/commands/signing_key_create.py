"""Create an active Ed25519 signing key for an organisation and print its public half."""

from django.core.management.base import BaseCommand

from cordum.accounts.management.options import organization_arg
from cordum.policies import services


class Command(BaseCommand):
    help = "Create an active bundle signing key (Ed25519) for an organisation; the current bundle is re-signed."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="organisation slug (optional when there is only one)")

    def handle(self, *args, org=None, **options):
        organization = organization_arg(org)
        key = services.signing_key_create(organization=organization)
        self.stdout.write(self.style.SUCCESS(f"Created signing key {key.key_id} for {organization.slug}."))
        self.stdout.write("Add to sidecar.yaml:\n  trusted_keys:\n"
                          f"    {key.key_id}: {key.public_key}")
