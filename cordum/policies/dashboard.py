"""Dashboard panel: the live policy version."""

from django.urls import reverse

from cordum.accounts.permissions import Perm
from cordum.policies.models import PolicyVersion


def panel(*, membership) -> dict | None:
    if not membership.has_perm(Perm.VIEW_POLICIES):
        return None
    live = (
        PolicyVersion.objects.filter(repository__organization_id=membership.organization_id, is_live=True)
        .select_related("repository").order_by("-committed_at").first()
    )
    if live is None:
        return {"title": "Live policy", "value": "none", "detail": "No valid policy published yet",
                "url": reverse("policies:repository_list")}
    return {"title": "Live policy", "value": live.version, "detail": f"{live.repository.name}: {live.message[:60]}",
            "url": reverse("policies:version_detail", args=[live.pk])}
