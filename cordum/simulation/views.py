"""HTML views for simulations: thin adapters over services and selectors, roles checked on the server."""

from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers
from django.views.generic import View

from cordum.accounts.access import RoleRequiredMixin
from cordum.accounts.permissions import Perm
from cordum.common.errors import CordumError
from cordum.simulation import presenters, selectors, services
from cordum.simulation.forms import SimulationForm


@method_decorator(require_GET, name="dispatch")
class SimulationListView(RoleRequiredMixin, View):
    required_perm = Perm.VIEW_SIMULATION

    def get(self, request):
        simulations = selectors.simulation_list(organization=self.organization, membership=self.membership)[:100]
        return render(request, "simulation/simulation_list.html", {
            "simulations": simulations,
            "can_run": self.membership.has_perm(Perm.RUN_SIMULATION),
        })


@method_decorator(require_http_methods(["GET", "POST"]), name="dispatch")
class SimulationCreateView(RoleRequiredMixin, View):
    required_perm = Perm.RUN_SIMULATION
    template_name = "simulation/simulation_form.html"

    def get(self, request):
        initial = {}
        if request.GET.get("version"):
            initial["candidate_version"] = request.GET["version"]
        form = SimulationForm(organization=self.organization, initial=initial)
        return render(request, self.template_name, {"form": form, "live": services.live_version(
            organization=self.organization)})

    def post(self, request):
        form = SimulationForm(request.POST, request.FILES, organization=self.organization)
        if form.is_valid():
            data = form.cleaned_data
            version = data.get("candidate_version")
            try:
                simulation = services.simulation_create(
                    organization=self.organization, user=request.user,
                    candidate_version_id=version.pk if version else None,
                    policy_yaml=None if version else data["policy_yaml"],
                    days=data["days"], team=data["team"], agent=data["agent"], environment=data["environment"],
                    baseline=data["baseline"],
                )
            except CordumError as exc:
                field = exc.extra.get("field")
                field = {"candidate_version_id": "candidate_version", "policy_yaml": "policy_yaml"}.get(field)
                if field not in form.fields:
                    field = None
                form.add_error(field, exc.message)
                for line in exc.extra.get("errors", []):
                    form.add_error(field, line)
            else:
                return redirect("simulation:detail", pk=simulation.pk)
        return render(request, self.template_name, {"form": form, "live": services.live_version(
            organization=self.organization)}, status=400)


@method_decorator([require_GET, vary_on_headers("HX-Request")], name="dispatch")
class SimulationDetailView(RoleRequiredMixin, View):
    """The report; while the run is in progress the body polls itself (htmx) for the progress bar."""

    required_perm = Perm.VIEW_SIMULATION

    def get(self, request, pk):
        simulation = selectors.simulation_get(organization=self.organization, pk=pk, membership=self.membership)
        context = {"simulation": simulation, "view": presenters.report_view(simulation, membership=self.membership),
                   "can_run": self.membership.has_perm(Perm.RUN_SIMULATION)}
        if request.htmx:
            return render(request, "simulation/partials/_body.html", context)
        return render(request, "simulation/simulation_detail.html", context)


@method_decorator(require_GET, name="dispatch")
class SimulationCompareView(RoleRequiredMixin, View):
    required_perm = Perm.VIEW_SIMULATION

    def get(self, request):
        choices = selectors.simulation_list(organization=self.organization, membership=self.membership).filter(status="completed")[:100]
        left, right = (self._pick(request.GET.get(key)) for key in ("a", "b"))
        return render(request, "simulation/simulation_compare.html", {
            "choices": choices, "left": left, "right": right,
            "columns": [(s, presenters.report_view(s, membership=self.membership)) for s in (left, right)
                        if s is not None],
            "rows": presenters.compare_rows(left, right) if left and right else [],
        })

    def _pick(self, value):
        if not value or not str(value).isdigit():
            return None
        return selectors.simulation_get(organization=self.organization, pk=int(value), membership=self.membership)


@method_decorator([require_GET, vary_on_headers("HX-Request")], name="dispatch")
class PolicyChangeView(RoleRequiredMixin, View):
    """A branch or pull/merge request head: semantic and line diff against the live version, its automatic
    simulation (polled with htmx while it runs) and the gates' verdicts. Readers of policies may open it; the
    example calls shown are only those of the teams the reader may read."""

    required_perm = Perm.VIEW_POLICIES

    def get(self, request, repo_pk, ref):
        from django.http import Http404

        from cordum.policies import selectors as policy_selectors

        try:
            repository = policy_selectors.repository_get(organization=self.organization, pk=repo_pk)
            review = None if request.htmx else policy_selectors.policy_change_review(repository=repository, ref=ref)
        except CordumError as exc:
            if exc.status_code == 404:
                raise Http404(exc.message) from None
            raise
        change = selectors.policy_change_get(repository=repository, ref=ref)
        simulation = change.simulation if change is not None else None
        context = {
            "repo": repository, "review": review, "change": change, "simulation": simulation,
            "view": presenters.change_report_view(simulation, membership=self.membership) if simulation else None,
            "gates": selectors.policy_change_gates(change=change) if change is not None else None,
            "can_open_simulation": simulation is not None and self.membership.has_perm(Perm.VIEW_SIMULATION)
            and selectors.simulation_visible_to(simulation, self.membership),
        }
        if request.htmx:
            return render(request, "simulation/partials/_change_result.html", context)
        summary = (review.get("semantic") or {}).get("summary") or {}
        context["settings_changes"] = [(label, summary.get(label) or []) for label in ("defaults", "limits",
                                                                                         "evidence")]
        return render(request, "simulation/change_detail.html", context)


@method_decorator([require_GET, vary_on_headers("HX-Request")], name="dispatch")
class PolicyChangeStateView(RoleRequiredMixin, View):
    """The simulation and gates state of one head, for the repository page's branch list (loaded with htmx,
    polling itself while the simulation runs)."""

    required_perm = Perm.VIEW_POLICIES

    def get(self, request, repo_pk, ref):
        from django.http import Http404

        from cordum.policies import selectors as policy_selectors

        try:
            repository = policy_selectors.repository_get(organization=self.organization, pk=repo_pk)
        except CordumError as exc:
            raise Http404(exc.message) from None
        change = selectors.policy_change_get(repository=repository, ref=ref)
        return render(request, "simulation/partials/_change_state.html", {
            "repo": repository, "change": change, "simulation": change.simulation if change else None,
            "gates": selectors.policy_change_gates(change=change) if change is not None else None,
        })
