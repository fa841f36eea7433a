from django.urls import path

from cordum.decisions.api import views

urlpatterns = [
    path("decisions", views.EvidenceUploadApi.as_view(), name="evidence-upload"),
    path("evidence", views.EvidenceListApi.as_view(), name="evidence-list"),
]
