"""Celery tasks of the chargers app: persisting gateway events, the offline sweep, the message
log purge. Arguments are JSON; every task is idempotent, `acks_late` and retried with backoff on
database errors, so a worker that is down or restarted loses nothing.

They run on the schedule in `CELERY_BEAT_SCHEDULE` (sparklin/settings.py).
"""

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from . import events as event_services

_RETRY = {
    "bind": True,
    "acks_late": True,
    "autoretry_for": (DatabaseError,),
    "retry_backoff": 2,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    # About two hours of retries: long enough for a database restart, bounded for a batch
    # that can never succeed (it stays in the worker log and the message log has its frames).
    "max_retries": 20,
}


@shared_task(name="chargers.tasks.process_events", **_RETRY)
def process_events(self, events: list[dict]) -> dict:
    """Persist one batch of gateway events (see `chargers.events` for their shape).

    Published by the gateway once per flush; processing the same batch twice changes nothing,
    which is what makes `acks_late` redelivery safe."""
    return event_services.process_events(events)


@shared_task(name="chargers.tasks.sweep_offline", **_RETRY)
def sweep_offline(self) -> int:
    """Mark not connected the chargers whose heartbeats stopped (beat, every minute)."""
    return event_services.sweep_offline(sweep_every=settings.OFFLINE_SWEEP_SECONDS)


@shared_task(name="chargers.tasks.purge_message_log", **_RETRY)
def purge_message_log(self) -> int:
    """Delete OCPP message log rows older than settings.OCPP_MESSAGE_LOG_DAYS."""
    return event_services.purge_message_log(settings.OCPP_MESSAGE_LOG_DAYS)


@shared_task(name="chargers.tasks.purge_unknown_chargers", **_RETRY)
def purge_unknown_chargers(self) -> int:
    """Keep the refused-identity table bounded: rows not seen for
    settings.UNKNOWN_CHARGER_DAYS days go, and at most settings.UNKNOWN_CHARGER_MAX stay."""
    from .models import UnknownCharger

    return UnknownCharger.objects.purge(
        keep=settings.UNKNOWN_CHARGER_MAX, days=settings.UNKNOWN_CHARGER_DAYS
    )
