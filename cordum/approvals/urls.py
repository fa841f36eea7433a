from django.urls import path

from cordum.approvals import views

app_name = "approvals"

urlpatterns = [
    path("", views.QueueView.as_view(), name="queue"),
    path("history/", views.HistoryView.as_view(), name="history"),
    path("<uuid:pk>/", views.DetailView.as_view(), name="detail"),
    path("<uuid:pk>/decide/", views.DecideView.as_view(), name="decide"),
    path("<uuid:pk>/context/", views.ContextView.as_view(), name="context"),
    path("link/<str:token>/", views.LinkView.as_view(), name="link"),
]
