"""Celery tasks of the meters app, on the schedule in CELERY_BEAT_SCHEDULE."""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings

from chargers.tasks import _TASK_BOUNDED, _run

from . import readings


@shared_task(name="meters.tasks.purge_readings", **_TASK_BOUNDED)
def purge_readings(self: Task) -> int:
    """Delete meter readings older than settings.METER_READINGS_DAYS."""
    return _run(self, readings.purge_readings, settings.METER_READINGS_DAYS)
