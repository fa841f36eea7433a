from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "cordum.common"
    label = "common"

    def ready(self):
        from django.conf import settings

        # Load the Celery app with Django (kept out of cordum/__init__ so the sidecar never imports it).
        from cordum import celery  # noqa: F401
        from cordum.common import telemetry

        # OTLP export of approvals and ingestion: off unless CORDUM_OTLP / OTEL_EXPORTER_OTLP_ENDPOINT say so.
        telemetry.setup(settings.CORDUM_OTLP)
