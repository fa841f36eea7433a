from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "cordum.approvals"
    label = "approvals"

    def ready(self):
        from cordum.approvals.metrics import collect
        from cordum.common import metrics

        metrics.register(collect)  # approvals on GET /metrics
