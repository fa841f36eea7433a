"""Reviewer queue, request page, decide (POST), history. Thin adapters over services/selectors."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django.views.generic import ListView, TemplateView, View

from cordum.accounts.access import RoleRequiredMixin
from cordum.accounts.permissions import Perm
from cordum.approvals import selectors, services
from cordum.approvals.choices import DECIDED_STATES, ApprovalState
from cordum.common.errors import CordumError


class HtmxPartialMixin:
    """One URL, full page or fragment: the partial when htmx asks, and `Vary: HX-Request`."""

    partial_template_name: str

    def get_template_names(self):
        if self.request.htmx:
            return [self.partial_template_name]
        return [self.template_name]

    def render_to_response(self, context, **kwargs):
        response = super().render_to_response(context, **kwargs)
        patch_vary_headers(response, ["HX-Request"])
        return response


class LinkView(RoleRequiredMixin, View):
    """A chat notification's signed, single-use link: after login, opens the card once, for an eligible reader."""

    required_perm = Perm.REVIEW_APPROVALS

    def get(self, request, token):
        from django.shortcuts import render

        try:
            approval = services.approval_link_request(token=token)
            if selectors.approval_get(membership=self.membership, pk=approval.pk) is None:
                raise Http404("No such approval request.")
            services.approval_link_spend(approval=approval)
        except CordumError as exc:
            return render(request, "approvals/link_refused.html", {"message": exc.message},
                          status=exc.status_code)
        return redirect("approvals:detail", pk=approval.pk)


@method_decorator(require_GET, name="dispatch")
class QueueView(RoleRequiredMixin, HtmxPartialMixin, TemplateView):
    required_perm = Perm.REVIEW_APPROVALS
    template_name = "approvals/queue.html"
    partial_template_name = "approvals/partials/_queue.html"

    def get_context_data(self, **kwargs):
        services.approvals_expire_due(organization=self.organization)  # expiry is decided on read as well as by the beat task
        filters = {key: self.request.GET.get(key, "").strip() for key in selectors.QUEUE_FILTERS}
        items = selectors.approval_queue_for_reviewer(membership=self.membership, filters=filters)
        return super().get_context_data(
            items=items, groups=selectors.approval_queue_groups(items), filters=filters,
            choices=selectors.approval_queue_choices(membership=self.membership), **kwargs)


@method_decorator(require_GET, name="dispatch")
class DetailView(RoleRequiredMixin, TemplateView):
    required_perm = Perm.REVIEW_APPROVALS
    template_name = "approvals/detail.html"

    def get_context_data(self, **kwargs):
        approval = selectors.approval_get(membership=self.membership, pk=self.kwargs["pk"])
        if approval is None:
            raise Http404("No such approval request.")
        approval = services.approval_refresh(approval=approval)
        item = selectors.approval_card(approval=approval, membership=self.membership)
        context = selectors.approval_context(approval=approval, membership=self.membership)
        return super().get_context_data(item=item, approval=approval, context=context, **kwargs)


@method_decorator(require_GET, name="dispatch")
class ContextView(RoleRequiredMixin, TemplateView):
    """The card's context, loaded when the reviewer opens it in the queue: the session's recent calls and
    similar past decisions (only what this reviewer may read)."""

    required_perm = Perm.REVIEW_APPROVALS
    template_name = "approvals/partials/_context.html"

    def get_context_data(self, **kwargs):
        approval = selectors.approval_get(membership=self.membership, pk=self.kwargs["pk"])
        if approval is None:
            raise Http404("No such approval request.")
        context = selectors.approval_context(approval=approval, membership=self.membership)
        return super().get_context_data(approval=approval, context=context, **kwargs)


@method_decorator(require_POST, name="dispatch")
class DecideView(RoleRequiredMixin, View):
    required_perm = Perm.REVIEW_APPROVALS

    def post(self, request, pk):
        approval = selectors.approval_get(membership=self.membership, pk=pk)
        if approval is None:
            raise Http404("No such approval request.")
        decision = request.POST.get("decision", "")
        try:
            approval = services.approval_decide(
                approval=approval, membership=self.membership, decision=decision,
                comment=request.POST.get("comment", ""), target_pattern=request.POST.get("target_pattern", ""),
            )
        except CordumError as exc:
            messages.error(request, exc.message)
        else:
            what = f"{approval.agent.name} · {approval.action or approval.tool} {approval.target}".rstrip()
            if approval.is_pending:
                got = sum(1 for vote in approval.votes.all() if vote.approves)
                messages.success(request, f"Approved ({got} of {approval.approvals_required} approvals): {what}")
            else:
                scope = " for this session" if approval.scope == "session" else ""
                messages.success(request, f"{approval.get_state_display()}{scope}: {what}")
        next_url = request.POST.get("next") or reverse("approvals:queue")
        if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
            next_url = reverse("approvals:queue")
        return redirect(next_url)


@method_decorator(require_GET, name="dispatch")
class HistoryView(RoleRequiredMixin, ListView):
    required_perm = Perm.REVIEW_APPROVALS
    template_name = "approvals/history.html"
    context_object_name = "approvals"
    paginate_by = 50

    def get_queryset(self):
        filters = {"state": self.request.GET.get("state", ""), "agent": self.request.GET.get("agent", "")}
        return selectors.approval_history_list(membership=self.membership, filters=filters)

    def get_context_data(self, **kwargs):
        return super().get_context_data(states=DECIDED_STATES, pending_state=ApprovalState.PENDING, **kwargs)
