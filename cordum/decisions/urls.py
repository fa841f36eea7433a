from django.urls import path

from cordum.decisions import views

app_name = "decisions"

urlpatterns = [
    path("", views.ExplorerView.as_view(), name="explorer"),
    path("chart/", views.ChartView.as_view(), name="chart"),
    path("records/<int:pk>/", views.RecordView.as_view(), name="record"),
    path("sessions/<str:session_id>/", views.SessionView.as_view(), name="session"),
    path("export/", views.ExportView.as_view(), name="export"),
    path("exports/", views.ExportJobCreateView.as_view(), name="export_job_create"),
    path("exports/<int:pk>/", views.ExportJobView.as_view(), name="export_job"),
    path("exports/<int:pk>/download/", views.ExportJobDownloadView.as_view(), name="export_job_download"),
    path("verify/", views.VerifyView.as_view(), name="verify"),
    path("verify/<int:pk>/", views.VerifyRunView.as_view(), name="verify_run"),
    path("quarantine/", views.QuarantineView.as_view(), name="quarantine"),
]
