"""Housekeeping of what the gateway reported: the offline sweep and the message log purge."""

from __future__ import annotations

from datetime import datetime, timedelta

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
