"""HTML views for accounts: thin adapters over services and selectors, role checked on the server."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.forms import SetPasswordForm
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST
from django.views.generic import FormView, ListView, TemplateView, View

from cordum.accounts import selectors, services
from cordum.accounts.access import RoleRequiredMixin
from cordum.accounts.forms import (
    AgentFilterForm,
    AgentForm,
    MembershipCreateForm,
    MembershipUpdateForm,
    SingleSignOnForm,
    TeamForm,
)
from cordum.accounts.middleware import SESSION_KEY
from cordum.accounts.models import Agent, Membership, Organization, SingleSignOn, Team, UserToken
from cordum.accounts.permissions import Perm
from cordum.common.errors import CordumError

# Apps that contribute a dashboard panel through `cordum.<app>.dashboard.panel(*, membership)`, and the one
# that draws the trends (`trends(*, membership)`, rendered by its partials/_trends.html).
DASHBOARD_APPS = ["policies", "approvals", "decisions", "rollouts"]
TRENDS_APP = "decisions"


def _dashboard(app: str):
    import importlib

    return importlib.import_module(f"cordum.{app}.dashboard")


def dashboard_panels(membership) -> list[dict]:
    """Each app's panel, if it has one and the role may see it (the app's function checks the role)."""
    panels = [_dashboard(app).panel(membership=membership) for app in DASHBOARD_APPS]
    return [panel for panel in panels if panel is not None]


class DashboardView(RoleRequiredMixin, TemplateView):
    template_name = "accounts/dashboard.html"

    def get_context_data(self, **kwargs):
        org = self.organization
        return super().get_context_data(
            panels=dashboard_panels(self.membership),
            trends=_dashboard(TRENDS_APP).trends(membership=self.membership),
            teams=selectors.team_list(organization=org).count(),
            members=selectors.membership_list(organization=org).count(),
            agents=selectors.agent_list(organization=org, filters={"active": "true"}).count(),
            own_agents=selectors.agent_list(organization=org).filter(owner=self.request.user),
            memberships=self.request.user.memberships.select_related("organization"),
            **kwargs,
        )


@method_decorator(require_POST, name="dispatch")
class SwitchOrganizationView(RoleRequiredMixin, View):
    def post(self, request):
        org_id = int(request.POST.get("organization", "0") or 0)
        if not request.user.memberships.filter(organization_id=org_id).exists():
            raise PermissionDenied("Not a member of that organisation.")
        request.session[SESSION_KEY] = org_id
        return redirect("accounts:dashboard")


# --- teams ------------------------------------------------------------------------------------
class TeamListView(RoleRequiredMixin, ListView):
    required_perm = Perm.MANAGE_ORG
    template_name = "accounts/team_list.html"
    context_object_name = "teams"

    def get_queryset(self):
        return selectors.team_list(organization=self.organization)


class TeamCreateView(RoleRequiredMixin, FormView):
    required_perm = Perm.MANAGE_ORG
    template_name = "accounts/team_form.html"
    form_class = TeamForm
    success_url = reverse_lazy("accounts:team_list")

    def form_valid(self, form):
        try:
            team = services.team_create(organization=self.organization, actor=self.request.user, **form.cleaned_data)
        except CordumError as exc:
            form.add_error(exc.extra.get("field"), exc.message)
            return self.form_invalid(form)
        messages.success(self.request, f"Team {team.name} created.")
        return super().form_valid(form)


class TeamUpdateView(RoleRequiredMixin, FormView):
    required_perm = Perm.MANAGE_ORG
    template_name = "accounts/team_form.html"
    form_class = TeamForm
    success_url = reverse_lazy("accounts:team_list")

    def get_team(self):
        return get_object_or_404(Team, pk=self.kwargs["pk"], organization=self.organization)

    def get_initial(self):
        team = self.get_team()
        return {"name": team.name, "description": team.description}

    def get_context_data(self, **kwargs):
        return super().get_context_data(team=self.get_team(), **kwargs)

    def form_valid(self, form):
        services.team_update(team=self.get_team(), actor=self.request.user, **form.cleaned_data)
        messages.success(self.request, "Team updated.")
        return super().form_valid(form)


@method_decorator(require_POST, name="dispatch")
class TeamDeleteView(RoleRequiredMixin, View):
    required_perm = Perm.MANAGE_ORG

    def post(self, request, pk):
        team = get_object_or_404(Team, pk=pk, organization=self.organization)
        try:
            services.team_delete(team=team, actor=request.user)
        except CordumError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Team {team.name} deleted.")
        return redirect("accounts:team_list")


# --- members ----------------------------------------------------------------------------------
class MembershipListView(RoleRequiredMixin, ListView):
    required_perm = Perm.MANAGE_ORG
    template_name = "accounts/membership_list.html"
    context_object_name = "memberships"

    def get_queryset(self):
        return selectors.membership_list(organization=self.organization)


class MembershipCreateView(RoleRequiredMixin, FormView):
    required_perm = Perm.MANAGE_ORG
    template_name = "accounts/membership_form.html"
    form_class = MembershipCreateForm
    success_url = reverse_lazy("accounts:membership_list")

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "organization": self.organization}

    def form_valid(self, form):
        try:
            services.membership_create(organization=self.organization, actor=self.request.user, **form.cleaned_data)
        except CordumError as exc:
            form.add_error(exc.extra.get("field"), exc.message)
            return self.form_invalid(form)
        messages.success(self.request, "Member added.")
        return super().form_valid(form)


class MembershipUpdateView(RoleRequiredMixin, FormView):
    required_perm = Perm.MANAGE_ORG
    template_name = "accounts/membership_form.html"
    form_class = MembershipUpdateForm
    success_url = reverse_lazy("accounts:membership_list")

    def get_membership(self):
        return get_object_or_404(Membership, pk=self.kwargs["pk"], organization=self.organization)

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "organization": self.organization}

    def get_initial(self):
        membership = self.get_membership()
        return {"role": membership.role, "teams": list(membership.teams.all())}

    def get_context_data(self, **kwargs):
        return super().get_context_data(membership=self.get_membership(), **kwargs)

    def form_valid(self, form):
        try:
            services.membership_update(membership=self.get_membership(), actor=self.request.user, **form.cleaned_data)
        except CordumError as exc:
            form.add_error(exc.extra.get("field"), exc.message)
            return self.form_invalid(form)
        messages.success(self.request, "Member updated.")
        return super().form_valid(form)


@method_decorator(require_POST, name="dispatch")
class MembershipDeleteView(RoleRequiredMixin, View):
    required_perm = Perm.MANAGE_ORG

    def post(self, request, pk):
        membership = get_object_or_404(Membership, pk=pk, organization=self.organization)
        if membership.user_id == request.user.pk:
            messages.error(request, "You cannot remove yourself.")
            return redirect("accounts:membership_list")
        try:
            services.membership_delete(membership=membership, actor=request.user)
            messages.success(request, "Member removed.")
        except CordumError as exc:
            messages.error(request, exc.message)
        return redirect("accounts:membership_list")


@method_decorator(require_POST, name="dispatch")
class MembershipInviteView(RoleRequiredMixin, View):
    """Sends (or re-sends) the invitation link; `revoke` withdraws an open one."""

    required_perm = Perm.MANAGE_ORG
    revoke = False

    def post(self, request, pk):
        membership = get_object_or_404(Membership, pk=pk, organization=self.organization)
        try:
            if self.revoke:
                services.invitation_revoke(membership=membership, actor=request.user)
                messages.success(request, f"Invitation of {membership.user.username} revoked.")
            else:
                services.invitation_send(membership=membership, actor=request.user)
                messages.success(request, f"Invitation sent to {membership.user.email}.")
        except CordumError as exc:
            messages.error(request, exc.message)
        return redirect("accounts:membership_list")


class InvitationAcceptView(View):
    """The link in an invitation email: set a password, once, before the link expires. No login needed."""

    template_name = "registration/invitation_accept.html"

    def _render(self, request, invitation, form, error=None, status=200):
        return render(request, self.template_name, {"invitation": invitation, "form": form, "error": error},
                      status=status)

    def get(self, request, token):
        try:
            invitation = services.invitation_for_token(token)
        except CordumError as exc:
            return self._render(request, None, None, exc.message, status=410)
        return self._render(request, invitation, SetPasswordForm(invitation.membership.user))

    def post(self, request, token):
        try:
            invitation = services.invitation_for_token(token)
        except CordumError as exc:
            return self._render(request, None, None, exc.message, status=410)
        form = SetPasswordForm(invitation.membership.user, request.POST)
        if not form.is_valid():
            return self._render(request, invitation, form, status=400)
        try:
            user = services.invitation_accept(token=token, password=form.cleaned_data["new_password1"])
        except CordumError as exc:
            return self._render(request, None, None, exc.message, status=410)
        messages.success(request, f"Password set. Log in as {user.username}.")
        return redirect("login")


# --- agents -----------------------------------------------------------------------------------
class AgentListView(RoleRequiredMixin, ListView):
    required_perm = Perm.MANAGE_ORG
    template_name = "accounts/agent_list.html"
    context_object_name = "agents"
    paginate_by = 50

    def get_queryset(self):
        self.filter_form = AgentFilterForm(self.request.GET or None)
        filters = self.filter_form.cleaned_data if self.filter_form.is_valid() else {}
        return selectors.agent_list(organization=self.organization, filters=filters)

    def get_template_names(self):
        if self.request.htmx:
            return ["accounts/partials/_agent_rows.html"]
        return [self.template_name]

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            filter_form=self.filter_form, teams=selectors.team_list(organization=self.organization), **kwargs
        )

    def render_to_response(self, context, **kwargs):
        response = super().render_to_response(context, **kwargs)
        response["Vary"] = "HX-Request"
        return response


class AgentCreateView(RoleRequiredMixin, FormView):
    required_perm = Perm.MANAGE_ORG
    template_name = "accounts/agent_form.html"
    form_class = AgentForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "organization": self.organization}

    def form_valid(self, form):
        try:
            data = dict(form.cleaned_data)
            owner = data.pop("owner", None) or self.request.user
            agent, issued = services.agent_create(
                organization=self.organization, actor=self.request.user, owner=owner, **data
            )
        except CordumError as exc:
            form.add_error(exc.extra.get("field"), exc.message)
            return self.form_invalid(form)
        # The token is rendered once, in this response, and never stored in plaintext.
        return render(self.request, "accounts/agent_token.html", {"agent": agent, "token": issued.plaintext})


@method_decorator(require_POST, name="dispatch")
class AgentRotateTokenView(RoleRequiredMixin, View):
    required_perm = Perm.MANAGE_ORG

    def post(self, request, pk):
        agent = get_object_or_404(Agent, pk=pk, organization=self.organization)
        if not agent.is_active:
            messages.error(request, "A revoked agent cannot get a new token.")
            return redirect("accounts:agent_list")
        issued = services.agent_token_rotate(agent=agent, actor=request.user)
        return render(request, "accounts/agent_token.html", {"agent": agent, "token": issued.plaintext, "rotated": True})


@method_decorator(require_POST, name="dispatch")
class AgentRevokeView(RoleRequiredMixin, View):
    required_perm = Perm.MANAGE_ORG

    def post(self, request, pk):
        agent = get_object_or_404(Agent, pk=pk, organization=self.organization)
        services.agent_revoke(agent=agent, actor=request.user)
        messages.success(request, f"Agent {agent.name} revoked; its tokens no longer work.")
        return redirect(reverse("accounts:agent_list"))


class AdminAuditLogView(RoleRequiredMixin, ListView):
    required_perm = Perm.VIEW_ADMIN_AUDIT
    template_name = "accounts/audit_log.html"
    context_object_name = "entries"
    paginate_by = 50

    def get_queryset(self):
        return selectors.admin_audit_log_list(organization=self.organization)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["described"] = selectors.admin_audit_entries_describe(context["entries"])
        return context


# --- personal API tokens (for scripts and the policy repo's CI) --------------------------------
class UserTokenListView(RoleRequiredMixin, ListView):
    template_name = "accounts/user_tokens.html"
    context_object_name = "tokens"

    def get_queryset(self):
        return UserToken.objects.filter(user=self.request.user).order_by("-created_at")

    def post(self, request):
        name = (request.POST.get("name") or "").strip()[:100]
        if not name:
            messages.error(request, "Give the token a name, e.g. 'policy repo CI'.")
            return redirect("accounts:user_tokens")
        _, plaintext = services.user_token_create(user=request.user, name=name)
        return render(request, "accounts/user_token_created.html", {"name": name, "token": plaintext})


@method_decorator(require_POST, name="dispatch")
class UserTokenRevokeView(RoleRequiredMixin, View):
    def post(self, request, pk):
        services.user_token_revoke(token=get_object_or_404(UserToken, pk=pk, user=request.user))
        messages.success(request, "Token revoked.")
        return redirect("accounts:user_tokens")


# --- single sign-on ---------------------------------------------------------------------------
class SingleSignOnSettingsView(RoleRequiredMixin, FormView):
    required_perm = Perm.MANAGE_ORG
    template_name = "accounts/sso_form.html"
    form_class = SingleSignOnForm
    success_url = reverse_lazy("accounts:sso_settings")

    def get_initial(self):
        config = SingleSignOn.objects.filter(organization=self.organization).first()
        if config is None:
            return super().get_initial()
        return {"enabled": config.enabled, "issuer": config.issuer, "client_id": config.client_id,
                "allowed_domains": config.allowed_domains, "groups_claim": config.groups_claim,
                "group_mappings": SingleSignOnForm.mappings_as_text(config.group_mappings),
                "default_role": config.default_role, "password_login": config.password_login}

    def get_context_data(self, **kwargs):
        callback = self.request.build_absolute_uri(reverse("accounts:sso_callback", args=[self.organization.slug]))
        return super().get_context_data(callback_url=callback, **kwargs)

    def form_valid(self, form):
        from cordum.accounts.sso import sso_configure

        try:
            sso_configure(organization=self.organization, actor=self.request.user, **form.cleaned_data)
        except CordumError as exc:
            form.add_error(exc.extra.get("field"), exc.message)
            return self.form_invalid(form)
        messages.success(self.request, "Single sign-on saved.")
        return super().form_valid(form)


def _sso_config(slug: str) -> SingleSignOn:
    organization = get_object_or_404(Organization, slug=slug)
    config = SingleSignOn.objects.filter(organization=organization, enabled=True).first()
    if config is None:
        raise CordumError(f"{organization.name} has no single sign-on configured.", status_code=404)
    return config


def _sso_refused(request, message: str, status: int):
    from cordum.accounts.forms import CordumLoginForm

    return render(request, "registration/login.html", {"form": CordumLoginForm(request), "sso_error": message},
                  status=status)


class SingleSignOnStartView(View):
    """From the login page: the organisation's provider (by slug) takes over."""

    def get(self, request, slug: str | None = None):
        from cordum.accounts.sso import sso_client

        slug = slug or request.GET.get("org", "").strip().lower()
        try:
            config = _sso_config(slug)
        except CordumError as exc:
            return _sso_refused(request, exc.message, exc.status_code)
        except Http404:
            return _sso_refused(request, f"No organisation called “{slug}”.", 404)
        redirect_uri = request.build_absolute_uri(reverse("accounts:sso_callback", args=[config.organization.slug]))
        return sso_client(config).authorize_redirect(request, redirect_uri)


class SingleSignOnCallbackView(View):
    def get(self, request, slug: str):
        from authlib.integrations.base_client import OAuthError

        from cordum.accounts.sso import sso_client, sso_member_from_claims

        try:
            config = _sso_config(slug)
            token = sso_client(config).authorize_access_token(request)
            user, membership = sso_member_from_claims(config=config, claims=dict(token.get("userinfo") or {}))
        except OAuthError as exc:
            return _sso_refused(request, f"Single sign-on failed: {exc.description or exc.error}.", 400)
        except CordumError as exc:
            return _sso_refused(request, exc.message, exc.status_code)
        except Http404:
            return _sso_refused(request, f"No organisation called “{slug}”.", 404)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        request.session[SESSION_KEY] = membership.organization_id
        return redirect("accounts:dashboard")
