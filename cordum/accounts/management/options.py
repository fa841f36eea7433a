"""Shared arguments of management commands: which organisation a command acts on."""

from django.core.management.base import CommandError

from cordum.accounts.models import Organization


def organization_arg(slug: str | None) -> Organization:
    if slug:
        org = Organization.objects.filter(slug=slug).first()
        if org is None:
            raise CommandError(f"No organisation with slug {slug!r}.")
        return org
    orgs = list(Organization.objects.all()[:2])
    if len(orgs) != 1:
        raise CommandError("Give --org SLUG (there is not exactly one organisation).")
    return orgs[0]
