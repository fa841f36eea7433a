"""Which policy bundle each agent should hold: the baseline, or what its rollout stage assigns."""

from cordum.accounts.models import Organization


def _latest_bundle(organization: Organization):
    from cordum.policies.models import PolicyBundle

    return PolicyBundle.objects.filter(organization=organization).order_by("-sequence").first()


def target_version(*, organization: Organization) -> str:
    bundle = _latest_bundle(organization)
    return bundle.manifest.get("version", "") if bundle else ""


def assigned_versions(*, organization: Organization, agents) -> dict[int, str]:
    version = target_version(organization=organization)
    return {a.pk: version for a in agents}
