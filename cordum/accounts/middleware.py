"""Sets request.organization and request.membership for signed-in people (one org per session)."""

from django.utils.functional import SimpleLazyObject

from cordum.accounts.selectors import membership_for

SESSION_KEY = "cordum_organization_id"


class CurrentOrganizationMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        def _membership():
            return membership_for(user=request.user, organization_id=request.session.get(SESSION_KEY))

        request.membership = SimpleLazyObject(_membership)
        return self.get_response(request)
