"""HTML views for policy repositories, versions and signing keys: thin adapters, roles checked on the server."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_GET, require_POST
from django.views.generic import FormView, TemplateView, View

from cordum.accounts.access import RoleRequiredMixin
from cordum.accounts.permissions import Perm
from cordum.common.errors import CordumError
from cordum.policies import selectors, services
from cordum.policies.forms import RepositoryForm


def _vary(response):
    response["Vary"] = "HX-Request"
    return response


@method_decorator(require_GET, name="dispatch")
class RepositoryListView(RoleRequiredMixin, TemplateView):
    required_perm = Perm.VIEW_POLICIES
    template_name = "policies/repository_list.html"

    def get_context_data(self, **kwargs):
        repositories = list(selectors.repository_list(organization=self.organization))
        for repository in repositories:
            repository.live = selectors.live_version(repository=repository)
        return super().get_context_data(
            repositories=repositories, bundles=selectors.policy_bundle_list(organization=self.organization)[:5],
            can_manage=self.membership.has_perm(Perm.MANAGE_ORG), **kwargs,
        )


class _RepositoryMixin(RoleRequiredMixin):
    def get_repository(self):
        return selectors.repository_get(organization=self.organization, pk=self.kwargs["pk"])

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        except CordumError as exc:
            if exc.status_code == 404:
                from django.http import Http404

                raise Http404(exc.message) from None
            raise


def _row(request, repository, membership):
    repository.live = selectors.live_version(repository=repository)
    return _vary(render(request, "policies/partials/_repository_row.html", {
        "repo": repository, "can_manage": membership.has_perm(Perm.MANAGE_ORG),
    }))


@method_decorator(require_GET, name="dispatch")
class RepositoryStatusView(_RepositoryMixin, View):
    """The row of one repository; the list polls it with htmx while a sync is queued or running."""

    required_perm = Perm.VIEW_POLICIES

    def get(self, request, pk):
        return _row(request, self.get_repository(), self.membership)


@method_decorator(require_POST, name="dispatch")
class RepositorySyncView(_RepositoryMixin, View):
    required_perm = Perm.MANAGE_ORG

    def post(self, request, pk):
        repository = self.get_repository()
        try:
            services.repository_sync_request(repository=repository, actor=request.user)
        except Exception as exc:  # eager mode (demo) runs the sync inline: show its error, keep the page
            messages.error(request, f"Sync failed: {exc}")
        repository.refresh_from_db()
        if request.htmx:
            return _row(request, repository, self.membership)
        messages.success(request, f"Sync of {repository.name} queued.")
        return redirect("policies:repository_list")


class RepositoryCreateView(RoleRequiredMixin, FormView):
    required_perm = Perm.MANAGE_ORG
    template_name = "policies/repository_form.html"
    form_class = RepositoryForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "organization": self.organization}

    def form_valid(self, form):
        try:
            repository, secret = services.repository_create(organization=self.organization, actor=self.request.user,
                                                            **form.cleaned_data)
        except CordumError as exc:
            form.add_error(exc.extra.get("field"), exc.message)
            return self.form_invalid(form)
        webhook_url = self.request.build_absolute_uri(reverse("git_webhook", args=[repository.pk]))
        # The webhook secret is shown once, in this response.
        return render(self.request, "policies/repository_created.html",
                      {"repo": repository, "secret": secret, "webhook_url": webhook_url})


class RepositoryUpdateView(_RepositoryMixin, FormView):
    required_perm = Perm.MANAGE_ORG
    template_name = "policies/repository_form.html"
    form_class = RepositoryForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "organization": self.organization, "instance": self.get_repository()}

    def get_initial(self):
        repo = self.get_repository()
        return {"name": repo.name, "url": repo.url, "branch": repo.branch, "policy_path": repo.policy_path,
                "is_enabled": repo.is_enabled, "forge_repository": repo.forge_repository,
                "forge_api_url": repo.forge_api_url}

    def get_context_data(self, **kwargs):
        return super().get_context_data(repo=self.get_repository(), **kwargs)

    def form_valid(self, form):
        services.repository_update(repository=self.get_repository(), actor=self.request.user, **form.cleaned_data)
        messages.success(self.request, "Repository updated.")
        return redirect("policies:repository_detail", pk=self.kwargs["pk"])


@method_decorator(require_POST, name="dispatch")
class RepositoryDeleteView(_RepositoryMixin, View):
    required_perm = Perm.MANAGE_ORG

    def post(self, request, pk):
        repository = self.get_repository()
        try:
            services.repository_delete(repository=repository, actor=request.user)
        except CordumError as exc:
            messages.error(request, exc.message)
            return redirect("policies:repository_detail", pk=pk)
        messages.success(request, f"Repository {repository.name} deleted.")
        return redirect("policies:repository_list")


@method_decorator(require_GET, name="dispatch")
class RepositoryDetailView(_RepositoryMixin, TemplateView):
    """The versions timeline of one repository (filter by branch or validity; htmx swaps the rows)."""

    required_perm = Perm.VIEW_POLICIES
    template_name = "policies/repository_detail.html"

    def get_template_names(self):
        return ["policies/partials/_version_rows.html"] if self.request.htmx else [self.template_name]

    def get_context_data(self, **kwargs):
        repository = self.get_repository()
        filters = {"repository": repository.pk, "branch": self.request.GET.get("branch", ""),
                   "valid": self.request.GET.get("valid", "")}
        try:
            versions = selectors.policy_version_list(organization=self.organization, filters=filters)[:200]
        except CordumError as exc:  # a hand-edited query string: say so and list everything
            messages.error(self.request, exc.message)
            versions = selectors.policy_version_list(organization=self.organization,
                                                     filters={"repository": repository.pk})[:200]
        return super().get_context_data(
            repo=repository, versions=versions, branches=sorted((repository.branch_heads or {}).keys()),
            branch_rows=selectors.repository_branch_list(repository=repository),
            live=selectors.live_version(repository=repository),
            bundles=repository.bundles.select_related("version")[:10],
            webhook_url=self.request.build_absolute_uri(reverse("git_webhook", args=[repository.pk])),
            can_manage=self.membership.has_perm(Perm.MANAGE_ORG), **kwargs,
        )

    def render_to_response(self, context, **kwargs):
        return _vary(super().render_to_response(context, **kwargs))


@method_decorator(require_GET, name="dispatch")
class VersionDetailView(RoleRequiredMixin, TemplateView):
    """One version: validity and errors, the policy source and rules, diffs to the previous and live versions."""

    required_perm = Perm.VIEW_POLICIES
    template_name = "policies/version_detail.html"

    def get_context_data(self, **kwargs):
        from django.http import Http404

        try:
            version = selectors.policy_version_get(organization=self.organization, pk=self.kwargs["pk"])
        except CordumError as exc:
            raise Http404(exc.message) from None
        review = selectors.policy_version_review(version=version)
        error_lines = {e.get("line") for e in version.errors}
        source_lines = [{"no": i, "text": line, "error": i in error_lines}
                        for i, line in enumerate(version.source_text.splitlines(), start=1)]
        return super().get_context_data(
            version=version, repo=version.repository, review=review, source_lines=source_lines,
            rules=(version.policy or {}).get("rules", []), tools=(version.policy or {}).get("tools", []),
            bundles=version.bundles.all()[:10], **kwargs,
        )


@method_decorator(require_GET, name="dispatch")
class KeyListView(RoleRequiredMixin, TemplateView):
    required_perm = Perm.VIEW_POLICIES
    template_name = "policies/key_list.html"

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            keys=selectors.signing_key_list(organization=self.organization),
            can_manage=self.membership.has_perm(Perm.MANAGE_ORG), **kwargs,
        )


@method_decorator(require_POST, name="dispatch")
class KeyCreateView(RoleRequiredMixin, View):
    required_perm = Perm.MANAGE_ORG

    def post(self, request):
        key = services.signing_key_create(organization=self.organization, actor=request.user)
        messages.success(request, f"Signing key {key.key_id} created; the current bundle is now signed by it too. "
                                  "Add its public key to your sidecars' trusted_keys before retiring the old one.")
        return redirect("policies:key_list")


@method_decorator(require_POST, name="dispatch")
class KeyRetireView(RoleRequiredMixin, View):
    required_perm = Perm.MANAGE_ORG

    def post(self, request, pk):
        key = selectors.signing_key_list(organization=self.organization).filter(pk=pk).first()
        if key is None:
            from django.http import Http404

            raise Http404("No such key.")
        try:
            services.signing_key_retire(key=key, actor=request.user)
        except CordumError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Signing key {key.key_id} retired.")
        return redirect("policies:key_list")
