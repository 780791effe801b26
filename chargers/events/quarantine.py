"""Quarantine: the events of one charger the worker could not apply, kept with the error for
staff (Django admin) and the charger's page, and retried on request.

An entry groups the events of one charger that failed with the same error while it is open, so
a charger repeating a bad value every minute makes one entry whose count grows, not thousands.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ..contract import Event
from ..models import Charger, QuarantinedEvents
from .values import bounded_json, clean_text, parse_time

logger = logging.getLogger("chargers.events")

Cause = QuarantinedEvents.Cause


def _event_time(event: Event) -> datetime:
    return parse_time(event.get("received_at")) or timezone.now()


def _key(event: object) -> str:
    return json.dumps(event, sort_keys=True, default=str)


def quarantine(charger: Charger, events: list[Event], error: str, cause: str) -> QuarantinedEvents:
    """Keep `events` of `charger` aside with `error` (the caller's transaction, or its own).
    Idempotent: a redelivered batch adds no event already kept."""
    error = clean_text(error, 2_000) or "error"
    kept = [bounded_json(e) for e in events]
    times = sorted(_event_time(e) for e in events) or [timezone.now()]
    with transaction.atomic():
        entry = (
            QuarantinedEvents.objects.select_for_update()
            .filter(
                charger=charger,
                cause=cause,
                error=error,
                state__in=[QuarantinedEvents.State.OPEN, QuarantinedEvents.State.RETRIED],
            )
            .first()
        )
        if entry is None:
            entry = QuarantinedEvents.objects.create(
                community_id=charger.community_id,
                charger=charger,
                cause=cause,
                error=error,
                events=kept[: QuarantinedEvents.MAX_EVENTS],
                count=len(kept),
                first_at=times[0],
                last_at=times[-1],
            )
        else:
            seen = {_key(e) for e in entry.events}
            new = [e for e in kept if _key(e) not in seen]
            if not new:
                return entry
            room = QuarantinedEvents.MAX_EVENTS - len(entry.events)
            entry.events = entry.events + new[: max(room, 0)]
            entry.count += len(new)
            entry.first_at = min(entry.first_at, times[0])
            entry.last_at = max(entry.last_at, times[-1])
            entry.state = QuarantinedEvents.State.OPEN
            entry.save(update_fields=["events", "count", "first_at", "last_at", "state"])
    logger.error(
        "Quarantined %d event(s) of %s (%s): %s", len(events), charger.identity, cause, error
    )
    return entry


def quarantine_rejected(charger: Charger, rejected: Iterable[tuple[Event, str]]) -> None:
    """Events refused by a value check, grouped by reason."""
    by_reason: dict[str, list[Event]] = {}
    for event, reason in rejected:
        by_reason.setdefault(reason, []).append(event)
    for reason, events in by_reason.items():
        quarantine(charger, events, reason, Cause.INVALID)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
