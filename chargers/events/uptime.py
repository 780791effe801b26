"""Connection intervals (`ConnectionInterval`), the uptime history, written set-based.

A `connected` event opens the interval named by its time; a `disconnected` event closes the
interval named by its `connected_at` (the gateway repeats the start). Both are upserts on
(charger, started_at), so the order in which workers apply them and replays change nothing: a
start never erases a recorded end, an end always wins. Per batch, whatever its size: one INSERT
of the starts (ON CONFLICT DO NOTHING), one upsert of the ends, then one UPDATE that closes every
interval still open of these chargers that a newer connection followed (the gateway that held it
died, or the charger reconnected elsewhere), at the newer one's start. The offline sweep closes
the open intervals of chargers it marks not connected, at their last message (`close_silent`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from django.db.models import Exists, F, OuterRef, Subquery
from django.db.models.functions import Coalesce, Greatest

from ..contract import DisconnectedPayload
from ..models import Charger, ConnectionInterval
from .values import parse_time

if TYPE_CHECKING:
    from .batch import ChargerState


def record_connected(st: ChargerState, at: datetime) -> None:
    st.connections.append((at, None))


def record_disconnected(st: ChargerState, p: DisconnectedPayload, at: datetime) -> None:
    started = parse_time(p.get("connected_at"))
    st.connections.append((started, at))


def flush(states: Sequence[ChargerState]) -> None:
    opened: list[ConnectionInterval] = []
    closed: dict[tuple[int, datetime], ConnectionInterval] = {}
    legacy: list[tuple[int, datetime]] = []  # an end without its start (an older gateway)
    chargers: set[int] = set()
    for st in states:
        c = st.charger
        for started, ended in st.connections:
            chargers.add(c.pk)
            if ended is None:
                if started is not None:
                    opened.append(
                        ConnectionInterval(
                            community_id=c.community_id, charger_id=c.pk, started_at=started
                        )
                    )
            elif started is None:
                legacy.append((c.pk, ended))
            else:
                closed[(c.pk, started)] = ConnectionInterval(
                    community_id=c.community_id,
                    charger_id=c.pk,
                    started_at=started,
                    ended_at=max(started, ended),
                    ended_by=ConnectionInterval.End.DISCONNECTED,
                )
    if not chargers:
        return
    if opened:
        ConnectionInterval.objects.bulk_create(opened, ignore_conflicts=True)
    if closed:
        ConnectionInterval.objects.bulk_create(
            list(closed.values()),
            update_conflicts=True,
            unique_fields=["charger", "started_at"],
            update_fields=["ended_at", "ended_by"],
        )
    for charger_id, ended in legacy:
        ConnectionInterval.objects.filter(
            charger_id=charger_id, ended_at__isnull=True, started_at__lte=ended
        ).update(ended_at=ended, ended_by=ConnectionInterval.End.DISCONNECTED)
    close_replaced(sorted(chargers))


def close_replaced(charger_ids: Sequence[int]) -> int:
    """Close the open intervals of `charger_ids` that a newer connection followed, at the newer
    one's start (an estimate a real disconnection replaces later)."""
    newer = ConnectionInterval.objects.filter(
        charger=OuterRef("charger"), started_at__gt=OuterRef("started_at")
    ).order_by("started_at")
    return (
        ConnectionInterval.objects.filter(charger_id__in=charger_ids, ended_at__isnull=True)
        .filter(Exists(newer))
        .update(
            ended_at=Subquery(newer.values("started_at")[:1]),
            ended_by=ConnectionInterval.End.REPLACED,
        )
    )


def close_silent() -> int:
    """At the offline sweep: close the open intervals of chargers marked not connected, at their
    last message (never before the interval's start)."""
    charger = Charger.objects.filter(pk=OuterRef("charger"))
    last_seen = charger.values("last_seen")[:1]
    return (
        ConnectionInterval.objects.filter(ended_at__isnull=True)
        .filter(Exists(charger.filter(connected=False)))
        .update(
            ended_at=Greatest(Coalesce(Subquery(last_seen), F("started_at")), F("started_at")),
            ended_by=ConnectionInterval.End.SILENT,
        )
    )
