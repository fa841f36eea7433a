from django.urls import path

from cordum.common.api import Router
from cordum.policies.api import views

router = Router()
router.register("repositories", views.PolicyRepositoryViewSet, basename="policy-repository")
router.register("policy-versions", views.PolicyVersionViewSet, basename="policy-version")
router.register("signing-keys", views.SigningKeyViewSet, basename="signing-key")
router.register("bundles", views.PolicyBundleViewSet, basename="policy-bundle")

urlpatterns = [
    path("keys", views.TrustedKeysApi.as_view(), name="trusted-keys"),
    path("tool-drifts", views.ToolDriftApi.as_view(), name="tool-drifts"),
    path("tool-drifts/update-lock", views.ToolLockUpdateApi.as_view(), name="tool-lock-update"),
    *router.urls,
]
