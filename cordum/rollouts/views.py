"""HTML views for the fleet and rollouts: thin adapters over selectors and services."""


from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_GET, require_POST
from django.views.generic import View

from cordum.accounts.access import RoleRequiredMixin
from cordum.accounts.permissions import Perm
from cordum.common.errors import CordumError, NotFound
from cordum.rollouts import selectors, services
from cordum.rollouts.forms import RolloutPlanForm, StageForm, StageFormSet, default_stage_initial


def _rollout(organization, pk):
    try:
        return selectors.rollout_get(organization=organization, pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from None


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


@method_decorator(require_GET, name="dispatch")
class RolloutListView(RoleRequiredMixin, View):
    required_perm = Perm.VIEW_ROLLOUT

    def get(self, request):
        from cordum.policies.selectors import repository_list

        repositories = list(repository_list(organization=self.organization).select_related("rollout_plan"))
        context = {
            "rollouts": selectors.rollout_list(organization=self.organization,
                                               filters={"state": request.GET.get("state", "")})[:100],
            "summary": selectors.fleet_summary(organization=self.organization),
            "repositories": repositories,
            "can_manage": self.membership.has_perm(Perm.MANAGE_ROLLOUT),
        }
        return _render(request, "rollouts/rollout_list.html", "rollouts/partials/_rollout_rows.html", context)


@method_decorator(require_GET, name="dispatch")
class RolloutDetailView(RoleRequiredMixin, View):
    required_perm = Perm.VIEW_ROLLOUT

    def get(self, request, pk):
        rollout = _rollout(self.organization, pk)
        agents = selectors.rollout_agents(rollout=rollout)
        context = {
            "rollout": rollout,
            "stages": selectors.rollout_stage_views(rollout=rollout),
            "agents": agents,
            "on_new": sum(1 for a in agents if a["enforces_new"]),
            "shadowing": sum(1 for a in agents if a["shadows_new"]),
            "summary": selectors.fleet_summary(organization=self.organization),
            "events": rollout.events.all(),
            "can_manage": self.membership.has_perm(Perm.MANAGE_ROLLOUT),
            "can_roll_back": selectors.rollout_rollback_refusal(rollout=rollout) is None,
        }
        return _render(request, "rollouts/rollout_detail.html", "rollouts/partials/_rollout_live.html", context)


@method_decorator(require_POST, name="dispatch")
class RolloutActionView(RoleRequiredMixin, View):
    """POST promote / pause / resume / rollback / start from the rollout page."""

    required_perm = Perm.MANAGE_ROLLOUT
    actions = {
        "start": lambda r, u, p: services.rollout_start(rollout=r, actor=u),
        "promote": lambda r, u, p: services.rollout_promote(rollout=r, actor=u, force=p.get("force") == "1"),
        "pause": lambda r, u, p: services.rollout_pause(rollout=r, actor=u),
        "resume": lambda r, u, p: services.rollout_resume(rollout=r, actor=u),
        "rollback": lambda r, u, p: services.rollout_rollback(rollout=r, actor=u, reason=p.get("reason", "")),
    }

    def post(self, request, pk, action):
        if action not in self.actions:
            raise Http404("No such rollout action.")
        rollout = _rollout(self.organization, pk)
        try:
            self.actions[action](rollout, request.user, request.POST)
        except CordumError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Rollout #{rollout.pk}: {action} done.")
        return redirect("rollouts:detail", pk=rollout.pk)


class RolloutPlanView(RoleRequiredMixin, View):
    """The plan as a stepper: one card per stage (add, remove), then the guardrails. No JSON to write."""

    required_perm = Perm.MANAGE_ROLLOUT
    template_name = "rollouts/plan_form.html"

    def get_repository(self):
        from cordum.policies.selectors import repository_get

        try:
            return repository_get(organization=self.organization, pk=self.kwargs["repository_id"])
        except NotFound as exc:
            raise Http404(exc.message) from None

    def _stage_formset(self, data=None, initial=None):
        teams = self.organization.teams.order_by("name")
        return StageFormSet(data, initial=initial, prefix="stage", form_kwargs={"teams": teams})

    def _render(self, request, repository, form, stages, status=200):
        plan = selectors.rollout_plan_get(repository=repository)
        return render(request, self.template_name, {"repository": repository, "plan": plan, "form": form,
                                                    "stages": stages}, status=status)

    def get(self, request, repository_id):
        repository = self.get_repository()
        plan = selectors.rollout_plan_get(repository=repository)
        if plan is None:
            form, initial = RolloutPlanForm(), default_stage_initial()
        else:
            form = RolloutPlanForm(initial={
                "auto_start": plan.auto_start, "auto_promote": plan.auto_promote,
                "max_new_restriction_rate": plan.max_new_restriction_rate,
                "forecast_margin": plan.forecast_margin, "min_calls": plan.min_calls})
            initial = [StageForm.initial_for(s) for s in plan.stages]
        return self._render(request, repository, form, self._stage_formset(initial=initial))

    def post(self, request, repository_id):
        repository = self.get_repository()
        if "add_stage" in request.POST:  # one more empty stage card; nothing is saved yet
            data = request.POST.copy()
            data["stage-TOTAL_FORMS"] = str(int(data.get("stage-TOTAL_FORMS") or 0) + 1)
            return self._render(request, repository, RolloutPlanForm(data), self._stage_formset(data))
        form = RolloutPlanForm(request.POST)
        stages = self._stage_formset(request.POST)
        if not (form.is_valid() and stages.is_valid()):
            return self._render(request, repository, form, stages, status=400)
        try:
            services.rollout_plan_set(repository=repository, actor=request.user, stages=stages.stages(),
                                             **form.cleaned_data)
        except CordumError as exc:
            form.add_error(None, exc.message)
            return self._render(request, repository, form, stages, status=400)
        messages.success(request, "Rollout plan saved; it applies to the next version that goes live.")
        return redirect("rollouts:list")
