from django.urls import path

from cordum.rollouts import views

app_name = "rollouts"

urlpatterns = [
    path("", views.RolloutListView.as_view(), name="list"),
    path("fleet/", views.FleetView.as_view(), name="fleet"),
    path("<int:pk>/", views.RolloutDetailView.as_view(), name="detail"),
    path("<int:pk>/<str:action>/", views.RolloutActionView.as_view(), name="action"),
    path("plans/<int:repository_id>/", views.RolloutPlanView.as_view(), name="plan"),
]
