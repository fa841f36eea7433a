from django.urls import path

from cordum.rollouts import views

app_name = "rollouts"

urlpatterns = [
    path("fleet/", views.FleetView.as_view(), name="fleet"),
]
