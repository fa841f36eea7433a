"""Dashboard panel: how much of the fleet enforces the version it should."""

from django.urls import reverse

from cordum.accounts.permissions import Perm
from cordum.rollouts.selectors import fleet_summary


def panel(*, membership) -> dict | None:
    if not membership.has_perm(Perm.VIEW_ROLLOUT):
        return None
    summary = fleet_summary(organization=membership.organization)
    return {"title": "Fleet", "value": f"{summary.on_target}/{summary.live}", "detail": summary.text
            + (f"; {summary.stale} stale" if summary.stale else ""), "url": reverse("rollouts:fleet")}
