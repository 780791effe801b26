"""A charger's uptime over the last days, from its connection intervals (`ConnectionInterval`,
written by the worker: `chargers.events.uptime`): the share of the period it was connected,
the timeline of its connections and the latest of them, for the charger page.

The period starts at its first recorded connection when that is more recent than `days` ago
(a charger installed last week is not 75 % down), so the page says since when it measures. An
interval without an end counts up to now while the charger is connected, else up to its last
message (the offline sweep has not closed it yet)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from .models import Charger, ConnectionInterval

# Drawing only: connections closer than this share of the period are one segment of the bar.
_MERGE_SHARE = 0.002


@dataclass
class Segment:
    left: float  # % of the period
    width: float


@dataclass
class Uptime:
    days: int
    since: datetime | None  # start of the measured period; None: never connected
    percent: float | None
    connected: timedelta = timedelta(0)
    disconnections: int = 0
    segments: list[Segment] = field(default_factory=list)
    latest: list[ConnectionInterval] = field(default_factory=list)


def _end(interval_end: datetime | None, charger: Charger, now: datetime, newest: bool) -> datetime:
    if interval_end is not None:
        return interval_end
    if newest and charger.connected:
        return now
    return charger.last_seen or now


def charger_uptime(
    charger: Charger, *, days: int = 30, now: datetime | None = None, latest: int = 10
) -> Uptime:
    """The uptime of `charger` over the last `days` days: three small indexed reads."""
    now = now or timezone.now()
    window = now - timedelta(days=days)
    intervals = ConnectionInterval.objects.filter(charger=charger)
    first = intervals.order_by("started_at").values_list("started_at", flat=True).first()
    if first is None:
        return Uptime(days=days, since=None, percent=None)
    since = max(window, first)
    rows = list(
        intervals.filter(started_at__lt=now)
        .exclude(ended_at__lte=since)
        .order_by("started_at")
        .values_list("started_at", "ended_at")
    )
    total = (now - since).total_seconds()
    spans: list[tuple[float, float]] = []
    for i, (start, recorded_end) in enumerate(rows):
        end = _end(recorded_end, charger, now, newest=i == len(rows) - 1)
        lo, hi = max(start, since), min(end, now)
        if hi > lo:
            spans.append(((lo - since).total_seconds(), (hi - since).total_seconds()))
    # Overlaps (an estimated end later corrected elsewhere) count once.
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    connected = sum(b - a for a, b in merged)
    drawn: list[list[float]] = []
    for a, b in merged:
        if drawn and total and (a - drawn[-1][1]) / total < _MERGE_SHARE:
            drawn[-1][1] = b
        else:
            drawn.append([a, b])
    return Uptime(
        days=days,
        since=since,
        percent=round(100 * connected / total, 1) if total > 0 else None,
        connected=timedelta(seconds=connected),
        disconnections=sum(1 for _, b in merged if b < total - 1),
        segments=[
            Segment(left=round(100 * a / total, 3), width=max(round(100 * (b - a) / total, 3), 0.2))
            for a, b in drawn
        ]
        if total > 0
        else [],
        latest=list(intervals.order_by("-started_at")[:latest]),
    )
