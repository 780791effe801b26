"""The Celery application: broker and behaviour come from Django settings (`CELERY_*`)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")

app = Celery("sparklin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
