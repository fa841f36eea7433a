from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "cordum.approvals"
    label = "approvals"
