"""HTML views for the fleet and rollouts: thin adapters over selectors and services."""

from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_GET
from django.views.generic import View

from cordum.accounts.access import RoleRequiredMixin
from cordum.accounts.permissions import Perm
from cordum.rollouts import selectors


def _render(request, full: str, partial: str, context: dict):
    response = render(request, partial if request.htmx else full, context)
    response["Vary"] = "HX-Request"
    return response


@method_decorator(require_GET, name="dispatch")
class FleetView(RoleRequiredMixin, View):
    required_perm = Perm.VIEW_ROLLOUT

    def get(self, request):
        filters = {"team": request.GET.get("team", "")}
        rows = selectors.fleet_rows(organization=self.organization, filters=filters)
        summary = selectors.fleet_summary(organization=self.organization, rows=rows)
        return _render(request, "rollouts/fleet.html", "rollouts/partials/_fleet.html",
                       {"rows": rows, "summary": summary, "filters": filters,
                        "teams": self.organization.teams.all()})
