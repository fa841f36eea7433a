from django.urls import re_path

from cordum.approvals.api import views
from cordum.common.api import UUID_PATH

# Sidecar paths are written without a trailing slash in the contract; both forms are accepted.
urlpatterns = [
    re_path(r"^approvals/?$", views.ApprovalOpenApi.as_view(), name="approval-open"),
    re_path(r"^approvals/(?P<pk>" + UUID_PATH + r")/?$", views.ApprovalStatusApi.as_view(), name="approval-status"),
    re_path(r"^approvals/(?P<pk>" + UUID_PATH + r")/consume/?$", views.ApprovalConsumeApi.as_view(),
            name="approval-consume"),
    re_path(r"^approvals/(?P<pk>" + UUID_PATH + r")/cancel/?$", views.ApprovalCancelApi.as_view(), name="approval-cancel"),
    re_path(r"^approval-requests/?$", views.ApprovalRequestListApi.as_view(), name="approval-request-list"),
    re_path(r"^approval-requests/(?P<pk>" + UUID_PATH + r")/?$", views.ApprovalRequestDetailApi.as_view(),
            name="approval-request-detail"),
    re_path(r"^approval-requests/(?P<pk>" + UUID_PATH + r")/decide/?$", views.ApprovalRequestDecideApi.as_view(),
            name="approval-request-decide"),
    re_path(r"^approval-requests/(?P<pk>" + UUID_PATH + r")/context/?$", views.ApprovalRequestContextApi.as_view(),
            name="approval-request-context"),
]
