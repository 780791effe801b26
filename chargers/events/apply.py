"""Applying a batch of gateway events: set-based when it can, charger by charger when it must.

1. The whole batch in one transaction (`Batch`: a few reads, bulk writes). Values refused by a
   check and chargers whose handlers raise are quarantined inside it; the rest commits.
2. If the database refuses the batch with a *permanent* error (DataError, IntegrityError, any
   error that is not transient), it is rolled back and each charger's events are applied in
   their own transaction: the good ones commit, the failing charger's events are quarantined.
3. A *transient* error (connection lost, serialization failure, deadlock, database starting)
   propagates: the Celery task retries the whole batch later, which is safe because applying
   events is idempotent.
"""

from __future__ import annotations

import gc
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone
from django_scopes import scopes_disabled

from ..contract import Event
from ..models import QuarantinedEvents, UnknownCharger
from .batch import Batch
from .handlers import ALIVE_KINDS, HANDLERS, validate
from .quarantine import Cause, describe, quarantine, quarantine_rejected
from .sql import use_fast_timestamps
from .values import clean_text, parse_time

logger = logging.getLogger("chargers.events")

# SQLSTATE classes of errors that go away by themselves: connection exceptions (08),
# transaction rollback — serialization failure, deadlock (40), insufficient resources (53),
# operator intervention — shutdown, query cancelled (57), system errors (58), lock not
# available (55P03). Everything else (22 data exceptions, 23 integrity violations, 54 program
# limits such as an index row too large…) fails again with the same input: permanent.
_TRANSIENT_SQLSTATE = ("08", "40", "53", "57", "58", "55P03")
_TRANSIENT_SQLITE = ("database is locked", "database table is locked", "disk i/o error")


def is_transient(exc: BaseException) -> bool:
    """True for a database error worth retrying as is; False for a fault of the input or code."""
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate:
        return str(sqlstate).startswith(_TRANSIENT_SQLSTATE)
    if cause is not None and type(cause).__module__.startswith("sqlite3"):
        return any(m in str(exc).lower() for m in _TRANSIENT_SQLITE)
    # psycopg's own OperationalError without a SQLSTATE: the connection failed or was lost.
    return True


def is_sqlite_busy(exc: BaseException) -> bool:
    """SQLite's "database is locked" (embedded mode): another process held the write lock
    longer than the busy timeout. Worth a quiet retry, not a traceback."""
    cause = exc.__cause__
    return (
        isinstance(exc, OperationalError)
        and cause is not None
        and type(cause).__module__.startswith("sqlite3")
        and any(m in str(exc).lower() for m in _TRANSIENT_SQLITE[:2])
    )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """A batch allocates tens of thousands of short-lived objects; the cyclic collector's full
    passes over the whole process then cost more than the batch's own work. Paused for the
    batch, the collector catches up at its end."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def process_events(events: list[Event]) -> dict[str, int]:
    """Persist one batch of gateway events. Safe to call twice with the same batch.

    Raises only transient database errors (to be retried); every other failure ends in the
    quarantine. Returns counts, for logs, tests and the benchmark."""
    use_fast_timestamps()
    with _gc_paused():
        return _process_events(events)


def _process_events(events: list[Event]) -> dict[str, int]:
    counts = {"events": len(events), "chargers": 0, "unknown": 0, "ignored": 0, "quarantined": 0}
    refused: list[Event] = []
    by_identity: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("identity"), str):
            counts["ignored"] += 1
            logger.warning("Ignored an event without identity: %r", str(event)[:200])
        elif event.get("kind") == "refused":
            refused.append(event)
        else:
            by_identity[event["identity"]].append(event)

    with scopes_disabled():  # one batch spans communities; every row written carries its own
        if refused:
            _record_refusals(refused)
            counts["unknown"] = len(refused)
        if not by_identity:
            return counts
        try:
            with transaction.atomic():
                batch = _apply(by_identity)
        except Exception as exc:
            if is_transient(exc):
                raise
            logger.exception(
                "Batch of %d events refused by the database; applying charger by charger",
                len(events),
            )
            _apply_one_by_one(by_identity, counts)
            return counts
        counts["chargers"] = sum(1 for st in batch.states if st.failed is None)
        counts["ignored"] += batch.unknown_events
        counts["quarantined"] = sum(
            len(st.rejected) for st in batch.states if st.failed is None
        ) + sum(len(st.events) for st in batch.states if st.failed is not None)
    return counts


def _apply(by_identity: dict[str, list[Event]]) -> Batch:
    """Load, apply and write; quarantine what was refused, inside the caller's transaction."""
    batch = Batch(by_identity).load().apply(HANDLERS, validate, ALIVE_KINDS)
    batch.flush()
    for st in batch.states:
        if st.failed is not None:
            quarantine(st.charger, st.events, describe(st.failed), Cause.ERROR)
        elif st.rejected:
            quarantine_rejected(st.charger, st.rejected)
    return batch


def _apply_one_by_one(by_identity: dict[str, list[Event]], counts: dict) -> None:
    for identity, events in by_identity.items():
        try:
            with transaction.atomic():
                batch = _apply({identity: events})
        except Exception as exc:
            if is_transient(exc):
                raise
            with transaction.atomic():
                batch = Batch({identity: events}, lock=False).load()
                for st in batch.states:
                    quarantine(st.charger, events, describe(exc), Cause.ERROR)
                    counts["quarantined"] += len(events)
                counts["ignored"] += batch.unknown_events
            continue
        counts["ignored"] += batch.unknown_events
        for st in batch.states:
            if st.failed is None:
                counts["chargers"] += 1
                counts["quarantined"] += len(st.rejected)
            else:
                counts["quarantined"] += len(st.events)


def retry_quarantined(entry: QuarantinedEvents) -> bool:
    """Apply an entry's events again (after a fix, or a value now accepted). Resolved when they
    apply cleanly; open again, with the new error, when they do not. Returns True if resolved.
    Transient errors propagate (the task retries)."""
    events = cast(list[Event], [e for e in entry.events if isinstance(e, dict)])
    identity = entry.charger.identity
    for e in events:
        e["identity"] = identity  # the charger's identity now (it may have been renamed)
    error = None
    with scopes_disabled():
        try:
            with transaction.atomic():
                batch = _apply_checked({identity: events})
                for st in batch.states:
                    if st.failed is not None:
                        raise _StillFailing(describe(st.failed))
                    if st.rejected:
                        raise _StillFailing("; ".join(sorted({r for _, r in st.rejected})))
        except _StillFailing as e:
            error = str(e)
        except Exception as exc:
            if is_transient(exc):
                raise
            error = describe(exc)
        entry.attempts += 1
        if error is None:
            entry.state = QuarantinedEvents.State.RESOLVED
            entry.resolved_at = timezone.now()
        else:
            entry.state = QuarantinedEvents.State.OPEN
            entry.error = clean_text(error, 2_000)
        entry.save(update_fields=["attempts", "state", "resolved_at", "error"])
    return error is None


class _StillFailing(Exception):
    pass


def _apply_checked(by_identity: dict[str, list[Event]]) -> Batch:
    """Like `_apply`, without quarantining: the retry decides what a failure means."""
    batch = Batch(by_identity).load().apply(HANDLERS, validate, ALIVE_KINDS)
    if any(st.failed is not None or st.rejected for st in batch.states):
        return batch
    batch.flush()
    return batch


def _record_refusals(events: list[Event]) -> None:
    """Upsert `UnknownCharger` per (identity, reason). Only attempts newer than the stored
    `last_seen` are counted, so a replayed batch does not inflate the counter."""
    grouped: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for e in events:
        payload = e.get("payload") or {}
        reason = payload.get("reason") or UnknownCharger.Reason.UNKNOWN
        if reason not in UnknownCharger.Reason.values:
            reason = UnknownCharger.Reason.UNKNOWN
        grouped[(clean_text(e["identity"], 100), reason)].append(e)
    for (identity, reason), items in grouped.items():
        times = sorted(
            (
                parse_time(e.get("received_at")) or timezone.now(),
                clean_text((e.get("payload") or {}).get("remote_address"), 64),
            )
            for e in items
        )
        with transaction.atomic():
            row, created = UnknownCharger.objects.select_for_update().get_or_create(
                identity=identity,
                reason=reason,
                defaults={
                    "first_seen": times[0][0],
                    "last_seen": times[-1][0],
                    "attempts": len(times),
                    "remote_address": times[-1][1],
                },
            )
            if created:
                continue
            newer = [t for t in times if t[0] > row.last_seen]
            row.first_seen = min(row.first_seen, times[0][0])
            if newer:
                row.attempts += len(newer)
                row.last_seen = newer[-1][0]
                row.remote_address = newer[-1][1]
            row.save(update_fields=["first_seen", "last_seen", "attempts", "remote_address"])
