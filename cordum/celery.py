"""Celery application. In the embedded demo (no REDIS_URL) tasks run eagerly."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cordum.settings")

app = Celery("cordum")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
