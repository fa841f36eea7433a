from django.urls import re_path

from cordum.rollouts.api import views

urlpatterns = [
    re_path(r"^bundle$", views.BundleApi.as_view(), name="bundle"),
    re_path(r"^heartbeat/?$", views.HeartbeatApi.as_view(), name="heartbeat"),
    re_path(r"^fleet/?$", views.FleetApi.as_view(), name="fleet"),
    re_path(r"^rollouts/?$", views.RolloutListApi.as_view(), name="rollout-list"),
    re_path(r"^rollouts/(?P<pk>\d+)/?$", views.RolloutDetailApi.as_view(), name="rollout-detail"),
    re_path(r"^rollouts/(?P<pk>\d+)/start/?$", views.RolloutStartApi.as_view(), name="rollout-start"),
    re_path(r"^rollouts/(?P<pk>\d+)/promote/?$", views.RolloutPromoteApi.as_view(), name="rollout-promote"),
    re_path(r"^rollouts/(?P<pk>\d+)/pause/?$", views.RolloutPauseApi.as_view(), name="rollout-pause"),
    re_path(r"^rollouts/(?P<pk>\d+)/resume/?$", views.RolloutResumeApi.as_view(), name="rollout-resume"),
    re_path(r"^rollouts/(?P<pk>\d+)/rollback/?$", views.RolloutRollbackApi.as_view(), name="rollout-rollback"),
    re_path(r"^rollout-plans/(?P<repository_id>\d+)/?$", views.RolloutPlanApi.as_view(), name="rollout-plan"),
]
