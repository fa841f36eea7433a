from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from cordum.accounts.forms import CordumLoginForm
from cordum.common import dist
from cordum.common.health import healthz
from cordum.common.metrics import metrics_view
from cordum.policies.webhooks import git_webhook

api_v1 = [
    path("", include("cordum.accounts.api.urls")),
    path("", include("cordum.policies.api.urls")),
    path("", include("cordum.decisions.api.urls")),
    path("", include("cordum.approvals.api.urls")),
    path("", include("cordum.simulation.api.urls")),
    path("", include("cordum.rollouts.api.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("dist/simple/", dist.simple_root, name="dist_simple"),
    path("dist/simple/<str:project>/", dist.simple_project, name="dist_project"),
    path("dist/files/<str:filename>", dist.dist_file, name="dist_file"),
    path("login/", auth_views.LoginView.as_view(authentication_form=CordumLoginForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password-reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password-reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("django-admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("hooks/git/<int:repo_id>", git_webhook, name="git_webhook"),
    path("policies/", include("cordum.policies.urls")),
    path("evidence/", include("cordum.decisions.urls")),
    path("approvals/", include("cordum.approvals.urls")),
    path("simulations/", include("cordum.simulation.urls")),
    path("rollouts/", include("cordum.rollouts.urls")),
    path("", include("cordum.accounts.urls")),
]
