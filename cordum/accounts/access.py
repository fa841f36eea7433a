"""Role checks for HTML views (mixin) and DRF views (permission classes), from one matrix."""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from rest_framework import permissions

from cordum.accounts.authentication import AgentPrincipal
from cordum.accounts.models import Membership


def require_membership(request, perm: str | None = None) -> Membership:
    """The caller's membership in the current organisation, or PermissionDenied (403)."""
    membership = getattr(request, "membership", None)
    if not membership:
        from cordum.accounts.selectors import membership_for

        membership = membership_for(user=request.user)
    if not membership:
        raise PermissionDenied("You are not a member of any organisation.")
    if perm and not membership.has_perm(perm):
        raise PermissionDenied(f"Your role ({membership.role}) does not allow this.")
    return membership


class RoleRequiredMixin(LoginRequiredMixin):
    """Class-based views: set `required_perm`; sets self.membership and self.organization."""

    required_perm: str | None = None

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.membership = require_membership(request, self.required_perm)
        self.organization = self.membership.organization
        return super().dispatch(request, *args, **kwargs)


class HasOrgPermission(permissions.BasePermission):
    """DRF: the view's `required_perm` (or `required_perms[method]`) must be granted by the role."""

    message = "Your role does not allow this."

    def has_permission(self, request, view):
        if isinstance(request.user, AgentPrincipal):
            return False
        if not request.user or not request.user.is_authenticated:
            return False  # DRF answers 401 with `WWW-Authenticate: Bearer` (no credentials), not 403
        perm = getattr(view, "required_perms", {}).get(request.method) or getattr(view, "required_perm", None)
        membership = require_membership(request, perm)
        view.membership = membership
        view.organization = membership.organization
        return True


class IsAgent(permissions.BasePermission):
    """DRF: only sidecars with a valid agent token."""

    message = "This endpoint needs an agent token (Authorization: Bearer cdm_agent_...)."

    def has_permission(self, request, view):
        return isinstance(request.user, AgentPrincipal)
