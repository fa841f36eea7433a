from django.urls import re_path

from cordum.simulation.api import views

urlpatterns = [
    re_path(r"^simulations/?$", views.SimulationListCreateApi.as_view(), name="api-simulations"),
    re_path(r"^simulations/(?P<pk>[0-9]+)/?$", views.SimulationDetailApi.as_view(), name="api-simulation-detail"),
]
