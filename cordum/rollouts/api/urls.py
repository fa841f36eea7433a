from django.urls import re_path

from cordum.rollouts.api import views

urlpatterns = [
    re_path(r"^heartbeat/?$", views.HeartbeatApi.as_view(), name="heartbeat"),
    re_path(r"^fleet/?$", views.FleetApi.as_view(), name="fleet"),
]
