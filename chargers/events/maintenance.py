"""Housekeeping of what the gateway reported: the offline sweep, the message log purge and the
folding of the live regions' change counters."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone
from django_scopes import scopes_disabled

from ..models import Charger, OcppMessage
from . import uptime


def sweep_offline(now: datetime | None = None, sweep_every: int = 60) -> int:
    """Mark not connected every charger not heard from for too long: the gateway may have died
    without saying so, or the charger went silent on an open socket.

    The promise is "not connected within two heartbeat intervals", and this runs every
    `sweep_every` seconds, so the silence allowed is 2 × interval − sweep_every (never less
    than one interval plus 30 s, so one late heartbeat is not an outage). Returns how many
    chargers changed."""
    now = now or timezone.now()
    changed = 0
    with scopes_disabled():
        intervals = list(
            Charger.objects.filter(connected=True)
            .values_list("heartbeat_interval", flat=True)
            .distinct()
        )
        for interval in intervals:
            interval = max(int(interval or 0), 1)
            allowed = max(interval + 30, 2 * interval - sweep_every)
            cutoff = now - timedelta(seconds=allowed)
            changed += (
                Charger.objects.filter(connected=True, heartbeat_interval=interval)
                .exclude(last_seen__gte=cutoff)
                .update(connected=False, connection_changed_at=now)
            )
        uptime.close_silent()  # their connection intervals end at their last message
    return changed


def purge_message_log(days: int, now: datetime | None = None) -> int:
    """Delete OCPP message log rows older than `days`; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=days)
    with scopes_disabled():
        deleted, _ = OcppMessage.objects.filter(at__lt=cutoff).delete()
    return deleted


# Every row committed so far, folded into one per community with the same sum. Rows a writer
# has not committed yet are not seen by the DELETE and stay for the next time.
_COMPACT_LIVE_SQL = """
WITH gone AS (DELETE FROM chargers_livechange RETURNING community_id, changes)
INSERT INTO chargers_livechange (community_id, changes)
SELECT community_id, sum(changes) FROM gone GROUP BY community_id
"""


def compact_live_changes() -> int:
    """Fold each community's `LiveChange` rows into one, keeping their sum (the change
    token), so a live poll adds up a few rows however busy the fleet was. Returns how many
    rows there are now (one per community that ever changed)."""
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(_COMPACT_LIVE_SQL)
        return cursor.rowcount
