from django.apps import AppConfig


class DecisionsConfig(AppConfig):
    name = "cordum.decisions"
    label = "decisions"

    def ready(self):
        from cordum.common import metrics
        from cordum.decisions.metrics import collect

        metrics.register(collect)  # evidence ingestion on GET /metrics
