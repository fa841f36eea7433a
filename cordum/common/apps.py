from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "cordum.common"
    label = "common"

    def ready(self):
        # Load the Celery app with Django (kept out of cordum/__init__ so the sidecar never imports it).
        from cordum import celery  # noqa: F401
