"""The measuring side's interface to power management (docs/architecture.md, "Meters").

Sources (run_meters for Modbus TCP and MQTT, the worker for OCPP main meters) hand their
readings to `record_readings`; the controller asks `site_measurement` for what the site's grid
meter (and solar meters) say now. Readings are validated here, the one place they enter:
absurd values are logged and dropped, never stored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from chargers.events.sql import insert_rows

from .config import READING_FIELDS
from .models import Meter, MeterReading

logger = logging.getLogger(__name__)

# Beyond these a reading is a decoding error (wrong register map, wrong scale), not a site.
MAX_PHASE_POWER_W = 10_000_000.0
MAX_TOTAL_POWER_W = 3 * MAX_PHASE_POWER_W
MAX_CURRENT_A = 50_000.0
MAX_ENERGY_WH = 1e15
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
# A meter's clock ahead of ours by more than this: the reading is stored at its arrival time,
# otherwise it would stay "the newest reading" until our clock caught up.
FUTURE_TOLERANCE = timedelta(minutes=5)

Phases = tuple[float | None, float | None, float | None]


@dataclass(frozen=True)
class NewReading:
    """A reading as a source produced it, before validation. `power_w_total` defaults to the
    sum of the measured phases."""

    meter_id: int
    at: datetime
    power_w_l1: float | None = None
    power_w_l2: float | None = None
    power_w_l3: float | None = None
    power_w_total: float | None = None
    current_a_l1: float | None = None
    current_a_l2: float | None = None
    current_a_l3: float | None = None
    energy_import_wh: float | None = None
    energy_export_wh: float | None = None


@dataclass(frozen=True)
class SiteMeasurement:
    at: datetime  # newest reading used
    grid_power_w: Phases  # per phase, + import / − export; None where not measured
    grid_current_a: Phases  # measured or None
    solar_power_w: float | None  # production, ≥ 0, None without a (speaking) solar meter
    stale: bool  # the grid meter is silent longer than METER_SILENT_SECONDS
    # The grid meter's total (+ import / − export): the only figure of a meter that does not
    # measure per phase (then grid_power_w is all None).
    grid_power_total_w: float | None = None


def _bad_number(value: float | None, limit: float, *, signed: bool = True) -> bool:
    if value is None:
        return False
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return True
    return abs(value) > limit or (not signed and value < 0)


def problem(reading: NewReading) -> str | None:
    """Why `reading` cannot be stored, or None when it can."""
    at = reading.at
    if not isinstance(at, datetime) or timezone.is_naive(at):
        return "time without a time zone"
    if not EARLIEST <= at < LATEST:
        return f"time {at.isoformat()} outside 2000–2100"
    phases = (reading.power_w_l1, reading.power_w_l2, reading.power_w_l3)
    if any(_bad_number(p, MAX_PHASE_POWER_W) for p in phases):
        return f"power per phase {phases} beyond ±{MAX_PHASE_POWER_W:.0f} W"
    if _bad_number(reading.power_w_total, MAX_TOTAL_POWER_W):
        return f"total power {reading.power_w_total} beyond ±{MAX_TOTAL_POWER_W:.0f} W"
    if reading.power_w_total is None and all(p is None for p in phases):
        return "no power measured"
    currents = (reading.current_a_l1, reading.current_a_l2, reading.current_a_l3)
    if any(_bad_number(c, MAX_CURRENT_A) for c in currents):
        return f"current {currents} beyond ±{MAX_CURRENT_A:.0f} A"
    for energy in (reading.energy_import_wh, reading.energy_export_wh):
        if _bad_number(energy, MAX_ENERGY_WH, signed=False):
            return f"energy register {energy} outside 0–{MAX_ENERGY_WH:.0f} Wh"
    return None


# The columns record_readings writes, in the order of the tuples `_row` builds.
COLUMNS = ["community", "meter", "at", *READING_FIELDS]


def _row(reading: NewReading, community_id: int, now: datetime) -> tuple[Any, ...]:
    total = reading.power_w_total
    if total is None:
        total = sum(
            p for p in (reading.power_w_l1, reading.power_w_l2, reading.power_w_l3) if p is not None
        )
    at = reading.at if reading.at <= now + FUTURE_TOLERANCE else now
    values = {field: getattr(reading, field) for field in READING_FIELDS}
    values["power_w_total"] = total
    return (community_id, reading.meter_id, at, *(values[f] for f in READING_FIELDS))


def record_readings(readings: list[NewReading]) -> None:
    """Store `readings` in bulk (a reading already stored for the same meter and time is kept,
    so a replay changes nothing) and move each meter's `last_reading_at` forward to its newest
    reading. Invalid readings and readings of unknown meters are logged and dropped."""
    if not readings:
        return
    now = timezone.now()
    community_of = dict(
        Meter.objects.with_scopes_disabled()
        .filter(pk__in={r.meter_id for r in readings})
        .values_list("pk", "community_id")
    )
    rows: list[tuple[Any, ...]] = []
    for reading in readings:
        why = problem(reading)
        if why is None and reading.meter_id not in community_of:
            why = "unknown meter"
        if why is not None:
            logger.warning("meter %s: reading rejected: %s", reading.meter_id, why)
            continue
        rows.append(_row(reading, community_of[reading.meter_id], now))
    if not rows:
        return
    newest: dict[int, datetime] = {}
    for row in rows:
        meter_id, at = row[1], row[2]
        if meter_id not in newest or at > newest[meter_id]:
            newest[meter_id] = at
    # Each meter's time moves forward only (several writers: run_meters and the worker's
    # batches processed out of order), in one executemany (pipelined by psycopg).
    table = connection.ops.quote_name(Meter._meta.db_table)
    sql = (
        f"UPDATE {table} SET last_reading_at = %s "  # noqa: S608 (the table name is ours)
        "WHERE id = %s AND (last_reading_at IS NULL OR last_reading_at < %s)"
    )
    with transaction.atomic():
        # One statement whatever the batch (rows as one JSON parameter on PostgreSQL); a
        # reading already stored for that meter and time is skipped (ON CONFLICT DO NOTHING).
        insert_rows(MeterReading, COLUMNS, rows)
        with connection.cursor() as cursor:
            cursor.executemany(sql, [(at, pk, at) for pk, at in sorted(newest.items())])


def silence_cutoff(now: datetime | None = None) -> datetime:
    """A meter whose last reading is older than this is silent."""
    return (now or timezone.now()) - timedelta(seconds=settings.METER_SILENT_SECONDS)


def is_silent(meter: Meter, now: datetime | None = None) -> bool:
    return meter.last_reading_at is None or meter.last_reading_at < silence_cutoff(now)


def latest_reading(meter_id: int) -> MeterReading | None:
    reading: MeterReading | None = (
        MeterReading.objects.with_scopes_disabled()
        .filter(meter_id=meter_id)
        .order_by("-at")
        .first()
    )
    return reading


def site_measurement(*, site_id: int) -> SiteMeasurement | None:
    """What the site's meters say now: the enabled grid meter's newest reading and the sum of
    the enabled solar meters still speaking. None when the site has no enabled grid meter.
    A grid meter that never spoke, or is silent, gives `stale=True` (with its last values, if
    any: the caller decides what a stale figure is worth — power management falls back to its
    failsafe limits)."""
    return site_measurements(site_ids=[site_id])[site_id]


def site_measurements(*, site_ids: Iterable[int]) -> dict[int, SiteMeasurement | None]:
    """`site_measurement` for many sites in two queries whatever their number (a controller
    cycle over every site)."""
    ids = sorted(set(site_ids))
    newest = (
        MeterReading.objects.with_scopes_disabled()
        .filter(meter_id=OuterRef("pk"))
        .order_by("-at")
        .values("pk")[:1]
    )
    meters = list(
        Meter.objects.with_scopes_disabled()
        .filter(site_id__in=ids, enabled=True, role__in=[Meter.Role.GRID, Meter.Role.SOLAR])
        .only("pk", "site_id", "role", "last_reading_at", "created_at")
        .annotate(newest_id=Subquery(newest))
        .order_by("pk")
    )
    latest = MeterReading.objects.with_scopes_disabled().in_bulk(
        [m.newest_id for m in meters if m.newest_id is not None]
    )
    by_site: dict[int, list[Meter]] = {site_id: [] for site_id in ids}
    for meter in meters:
        by_site[meter.site_id].append(meter)
    now = timezone.now()
    return {site_id: _measure(site_meters, latest, now) for site_id, site_meters in by_site.items()}


def _measure(
    meters: list[Meter], latest: dict[Any, MeterReading], now: datetime
) -> SiteMeasurement | None:
    grid = next((m for m in meters if m.role == Meter.Role.GRID), None)
    if grid is None:
        return None
    reading = latest.get(grid.newest_id)  # type: ignore[attr-defined]
    if reading is None:
        return SiteMeasurement(
            at=grid.created_at,
            grid_power_w=(None, None, None),
            grid_current_a=(None, None, None),
            solar_power_w=None,
            stale=True,
        )
    at = reading.at
    solar: float | None = None
    for meter in meters:
        if meter.role != Meter.Role.SOLAR or is_silent(meter, now):
            continue
        produced = latest.get(meter.newest_id)  # type: ignore[attr-defined]
        if produced is None:
            continue
        # Production whatever way the meter is wired: an inverter's output may read as export.
        solar = (solar or 0.0) + abs(produced.power_w_total)
        at = max(at, produced.at)
    return SiteMeasurement(
        at=at,
        grid_power_w=(reading.power_w_l1, reading.power_w_l2, reading.power_w_l3),
        grid_current_a=(reading.current_a_l1, reading.current_a_l2, reading.current_a_l3),
        solar_power_w=solar,
        stale=is_silent(grid, now),
        grid_power_total_w=reading.power_w_total,
    )


def grid_history(
    *, site_id: int, since: datetime, limit: int = 2000
) -> list[tuple[datetime, float]]:
    """(time, total W) of the site's enabled grid meter since `since`, oldest first — at most
    the `limit` newest points (for charts). Empty without a grid meter."""
    grid = (
        Meter.objects.with_scopes_disabled()
        .filter(site_id=site_id, enabled=True, role=Meter.Role.GRID)
        .values_list("pk", flat=True)
        .first()
    )
    if grid is None:
        return []
    points = (
        MeterReading.objects.with_scopes_disabled()
        .filter(meter_id=grid, at__gte=since)
        .order_by("-at")
        .values_list("at", "power_w_total")[:limit]
    )
    return [(at, float(total)) for at, total in reversed(list(points))]


def purge_readings(days: int, now: datetime | None = None) -> int:
    """Delete readings older than `days` (meter by meter, along the (meter, at) index);
    returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = 0
    for meter_id in Meter.objects.with_scopes_disabled().values_list("pk", flat=True):
        count, _ = (
            MeterReading.objects.with_scopes_disabled()
            .filter(meter_id=meter_id, at__lt=cutoff)
            .delete()
        )
        deleted += count
    return deleted
