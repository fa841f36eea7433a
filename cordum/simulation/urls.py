from django.urls import path

from cordum.simulation import views

app_name = "simulation"

urlpatterns = [
    path("", views.SimulationListView.as_view(), name="list"),
    path("new/", views.SimulationCreateView.as_view(), name="create"),
    path("compare/", views.SimulationCompareView.as_view(), name="compare"),
    path("<int:pk>/", views.SimulationDetailView.as_view(), name="detail"),
    path("changes/<int:repo_pk>/<path:ref>", views.PolicyChangeView.as_view(), name="change"),
    path("change-state/<int:repo_pk>/<path:ref>", views.PolicyChangeStateView.as_view(), name="change_state"),
]
