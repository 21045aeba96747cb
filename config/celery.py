"""The Celery application. Workers: `celery -A config worker -Q celery,gpu`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("readerstudy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Worker start-up hooks (ML threads, re-queueing work a dead worker left); they import no models at import time.
import generation.signals  # noqa: E402, F401
import jobs.signals  # noqa: E402, F401
