from django.urls import path

from cordum.policies import views

app_name = "policies"

urlpatterns = [
    path("", views.RepositoryListView.as_view(), name="repository_list"),
    path("repositories/new/", views.RepositoryCreateView.as_view(), name="repository_create"),
    path("repositories/<int:pk>/", views.RepositoryDetailView.as_view(), name="repository_detail"),
    path("repositories/<int:pk>/edit/", views.RepositoryUpdateView.as_view(), name="repository_update"),
    path("repositories/<int:pk>/delete/", views.RepositoryDeleteView.as_view(), name="repository_delete"),
    path("repositories/<int:pk>/sync/", views.RepositorySyncView.as_view(), name="repository_sync"),
    path("repositories/<int:pk>/status/", views.RepositoryStatusView.as_view(), name="repository_status"),
    path("versions/<int:pk>/", views.VersionDetailView.as_view(), name="version_detail"),
    path("keys/", views.KeyListView.as_view(), name="key_list"),
    path("tool-drifts/", views.ToolDriftListView.as_view(), name="tool_drift_list"),
    path("tool-drifts/update-lock/", views.ToolLockUpdateView.as_view(), name="tool_lock_update"),
    path("keys/new/", views.KeyCreateView.as_view(), name="key_create"),
    path("keys/<int:pk>/retire/", views.KeyRetireView.as_view(), name="key_retire"),
]
