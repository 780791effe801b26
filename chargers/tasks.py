"""Celery tasks of the chargers app: persisting gateway events, retrying quarantined events, the
offline sweep, the message log purge. Arguments are JSON; every task is idempotent and
`acks_late`, so a worker that is killed or restarted loses nothing.

Only transient database errors are retried (`chargers.events.is_transient`: the connection
lost, a serialization failure, a deadlock, the database starting or shutting down), with an
exponential backoff capped at five minutes and no limit on the count: an event batch is what a
charger was told is recorded, it must not be dropped because the database was away for a night.
A permanent error (DataError, IntegrityError, a bug) is never retried: `process_events`
quarantines the failing charger's events and commits the rest of the batch.

They run on the schedule in `CELERY_BEAT_SCHEDULE` (sparklin/settings.py).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, Literal, TypedDict, TypeVar

from celery import Task, shared_task
from django.conf import settings
from django.db import close_old_connections, connection, connections
from django_scopes import scopes_disabled

from . import events as event_services
from .batching import EventBatchTask
from .contract import Event
from .models import QuarantinedEvents

logger = logging.getLogger(__name__)

BACKOFF_MAX = 300
T = TypeVar("T")


def backoff(retries: int) -> float:
    """2, 4, 8 … seconds up to BACKOFF_MAX, with full jitter so workers do not retry in step."""
    return random.uniform(1, min(BACKOFF_MAX, 2 ** (retries + 1)))


def _run(task: Task, func: Callable[..., T], *args: Any) -> T:
    """Run `func`; retry the task later on a transient database error, fail on anything else."""
    # A long-lived worker: a connection the database dropped since the last task is replaced
    # (not when called inside a transaction, as eager tasks in tests are).
    if not connection.in_atomic_block:
        close_old_connections()
    try:
        result = func(*args)
    except Exception as exc:
        if not event_services.is_transient(exc):
            raise
        # The connection may be dead (terminated backend, restart): drop it, the retry opens
        # a new one.
        if not connection.in_atomic_block:
            for conn in connections.all(initialized_only=True):
                conn.close_if_unusable_or_obsolete()
        countdown = backoff(task.request.retries)
        logger.warning(
            "%s: transient database error, retry %d in %.0f s: %s",
            task.name,
            task.request.retries + 1,
            countdown,
            exc,
        )
        raise task.retry(exc=exc, countdown=countdown) from exc
    if task.request.retries:
        logger.warning("%s: database back, done after %d retries", task.name, task.request.retries)
    return result


class _TaskOptions(TypedDict):
    """The options every task here shares, typed so that `shared_task`'s overloads apply."""

    bind: Literal[True]
    acks_late: bool
    max_retries: int | None


_TASK: _TaskOptions = {"bind": True, "acks_late": True, "max_retries": None}
_TASK_BOUNDED: _TaskOptions = {**_TASK, "max_retries": 5}


@shared_task(name="chargers.tasks.process_events", base=EventBatchTask, **_TASK)
def process_events(self: Task, events: list[Event]) -> dict[str, int]:
    """Persist one batch of gateway events (`chargers.contract` for their shape).

    Published by the gateway once per flush; processing the same batch twice changes nothing,
    which is what makes `acks_late` redelivery and retries safe. In a worker, the messages
    waiting are applied several at a time (`chargers.batching`); this body runs when the task
    is called eagerly (embedded mode, tests)."""
    return _run(self, event_services.process_events, events)


@shared_task(name="chargers.tasks.retry_quarantined", **_TASK)
def retry_quarantined(self: Task, entry_id: int) -> bool:
    """Apply a quarantined entry's events again (asked from the admin or the charger page)."""

    def retry() -> bool:
        with scopes_disabled():
            entry = (
                QuarantinedEvents.objects.select_related("charger")
                .filter(pk=entry_id, state=QuarantinedEvents.State.RETRIED)
                .first()
            )
        if entry is None:
            return False  # resolved meanwhile, or asked twice
        return event_services.retry_quarantined(entry)

    return _run(self, retry)


@shared_task(name="chargers.tasks.sweep_offline", **_TASK_BOUNDED)
def sweep_offline(self: Task) -> int:
    """Mark not connected the chargers whose heartbeats stopped (beat, every minute)."""
    return _run(self, event_services.sweep_offline, None, settings.OFFLINE_SWEEP_SECONDS)


@shared_task(name="chargers.tasks.compact_live_changes", **_TASK_BOUNDED)
def compact_live_changes(self: Task) -> int:
    """Fold the live regions' change counters (`chargers.models.LiveChange`), every minute."""
    return _run(self, event_services.compact_live_changes)


@shared_task(name="chargers.tasks.purge_message_log", **_TASK_BOUNDED)
def purge_message_log(self: Task) -> int:
    """Delete OCPP message log rows older than settings.OCPP_MESSAGE_LOG_DAYS."""
    return _run(self, event_services.purge_message_log, settings.OCPP_MESSAGE_LOG_DAYS)


def _purge_unknown() -> int:
    from .models import UnknownCharger

    return UnknownCharger.objects.purge(
        keep=settings.UNKNOWN_CHARGER_MAX, days=settings.UNKNOWN_CHARGER_DAYS
    )


@shared_task(name="chargers.tasks.purge_unknown_chargers", **_TASK_BOUNDED)
def purge_unknown_chargers(self: Task) -> int:
    """Keep the refused-identity table bounded: rows not seen for
    settings.UNKNOWN_CHARGER_DAYS days go, and at most settings.UNKNOWN_CHARGER_MAX stay."""
    return _run(self, _purge_unknown)
