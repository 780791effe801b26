"""Reads for the Power page, the dashboard alert and the charger page (always inside the
community's scope, like every portal read)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from chargers.models import Charger, ChargingSession
from chargers.selectors import charger_search_q
from meters.models import Meter
from meters.readings import is_silent, silence_cutoff
from sparklin.charts import Chart, Series
from sparklin.live import fingerprint

from .models import ChargerPower, PowerSample, SitePower

if TYPE_CHECKING:
    from communities.models import Community, Site

CHART_MINUTES = 60
CHART_POINTS = 120


@dataclass
class ChargerLine:
    """One charger on the Power page."""

    charger: Charger
    power: ChargerPower | None
    charging: bool

    @property
    def status(self) -> str:
        p = self.power
        if p is None:
            return "unmanaged"
        if p.rejected_at is not None:
            return "rejects"
        if p.non_compliant_since is not None:
            return "non_compliant"
        if self.charging and p.limit_a == 0:
            return "paused"
        return "ok"


def site_power(site: Site) -> SitePower | None:
    found: SitePower | None = SitePower.objects.filter(site=site).first()
    return found


def site_chargers(site: Site, search: str = "") -> QuerySet[Charger]:
    """The site's chargers in the Power page's order, each with its power settings (one join),
    those whose serial number or name contains `search` when given."""
    qs = Charger.objects.filter(site=site).select_related("power").order_by("identity", "pk")
    return qs.filter(charger_search_q(search)) if search else qs


def charger_lines(site: Site, chargers: Iterable[Charger] | None = None) -> list[ChargerLine]:
    """The lines of `chargers` (a page of `site_chargers`; all of them by default): two
    queries whatever their number, the chargers with their settings and those in session."""
    listed = list(site_chargers(site) if chargers is None else chargers)
    charging = set(
        ChargingSession.objects.filter(
            charger__in=[c.pk for c in listed], state=ChargingSession.State.ACTIVE
        ).values_list("charger_id", flat=True)
    )
    return [ChargerLine(c, _power_of(c), c.pk in charging) for c in listed]


def _power_of(charger: Charger) -> ChargerPower | None:
    try:
        power: ChargerPower = charger.power  # type: ignore[attr-defined]
    except ChargerPower.DoesNotExist:
        return None
    return power


def grid_meter(site: Site) -> tuple[Meter | None, bool]:
    """The site's enabled grid meter and whether it is silent."""
    meter: Meter | None = Meter.objects.filter(
        site=site, role=Meter.Role.GRID, enabled=True
    ).first()
    return meter, meter is not None and is_silent(meter)


def alerts(site: Site | None = None) -> QuerySet[ChargerPower]:
    """Chargers that do not do what they are told: non-compliant, or refusing profiles."""
    qs = ChargerPower.objects.filter(
        Q(non_compliant_since__isnull=False) | Q(rejected_at__isnull=False)
    ).select_related("charger__site")
    if site is not None:
        qs = qs.filter(charger__site=site)
    return qs.order_by("charger__identity")


def latest_sample(site: Site) -> PowerSample | None:
    sample: PowerSample | None = PowerSample.objects.filter(site=site).order_by("-at").first()
    return sample


# One statement, the Power page's change token (like `chargers.selectors.live_summary`'s): the
# newest sample (the chart and its figures), a digest of the site's chargers joined to their
# power state (each line and each alert: name, limits, draw, compliance, per-outlet verdicts),
# of its sessions in progress (the Session column, paused) and its enabled grid meter's last
# reading time (silent or not is decided here, so a meter reading every few seconds does not
# change the token). Each scans the site's rows through their site index, never the fleet's.
_LIVE_TOKEN_SQL = """
SELECT
  (SELECT max(id) FROM power_powersample WHERE site_id = %(site)s),
  (SELECT count(*) || ':' || coalesce(sum(hash_record((ch.id, ch.name, ch.identity, p.id,
          p.limit_a, p.draw_a, p.failsafe_a, p.non_compliant_since, p.rejected_at,
          p.outlet_limits, p.outlet_obedience))), 0)
     FROM chargers_charger ch LEFT JOIN power_chargerpower p ON p.charger_id = ch.id
    WHERE ch.site_id = %(site)s),
  (SELECT count(*) || ':' || coalesce(sum(hash_record((s.id, s.charger_id))), 0)
     FROM chargers_chargingsession s JOIN chargers_charger ch ON ch.id = s.charger_id
    WHERE ch.site_id = %(site)s AND s.state = %(active)s),
  (SELECT json_build_array(m.id, m.name, m.last_reading_at) FROM meters_meter m
    WHERE m.site_id = %(site)s AND m.role = %(grid)s AND m.enabled
    ORDER BY m.name, m.id LIMIT 1)
"""


def live_token(site: Site, now: datetime | None = None) -> str | None:
    """The change token of the Power page's live region, in one query whatever the number of
    chargers: an unchanged poll answers 204 before any list query. None off PostgreSQL (the
    SQLite demo): the caller then fingerprints the lines (`live_fingerprint`)."""
    if connection.vendor != "postgresql":
        return None
    params: dict[str, Any] = {
        "site": site.pk,
        "active": ChargingSession.State.ACTIVE.value,
        "grid": Meter.Role.GRID.value,
    }
    with connection.cursor() as cursor:
        cursor.execute(_LIVE_TOKEN_SQL, params)
        sample, chargers, sessions, meter = cursor.fetchone()
    if isinstance(meter, str):  # a driver that does not decode json
        meter = json.loads(meter)
    silent = None
    if meter is not None:
        read = parse_datetime(meter[2]) if meter[2] else None
        silent = read is None or read < silence_cutoff(now)
        meter = meter[:2]
    return fingerprint(sample, chargers, sessions, meter, silent)


def live_fingerprint(site: Site, lines: list[ChargerLine]) -> str:
    """The change token computed from the lines themselves (where `live_token` is None)."""
    sample = latest_sample(site)
    meter, silent = grid_meter(site)
    return fingerprint(
        sample.pk if sample else None,
        meter.pk if meter else None,
        silent,
        [
            (
                line.charger.pk,
                str(line.charger),
                line.charging,
                line.status,
                line.power.limit_a if line.power else None,
                line.power.draw_a if line.power else None,
                line.power.failsafe_a if line.power else None,
                line.power.outlet_obedience if line.power else None,
            )
            for line in lines
        ],
    )


def _kw(value: float | None) -> float | None:
    return None if value is None else round(value / 1000, 2)


def history_chart(site: Site, community: Community, now: datetime | None = None) -> Chart:
    """The last hour: grid import, chargers, solar and the limit, in kW."""
    now = now or timezone.now()
    points = list(
        PowerSample.objects.filter(site=site, at__gte=now - timedelta(minutes=CHART_MINUTES))
        .order_by("at")
        .values("at", "grid_w", "chargers_w", "solar_w", "limit_w")
    )
    step = max(1, len(points) // CHART_POINTS)
    points = points[::step]
    tz = community.tz
    has_solar = any(p["solar_w"] is not None for p in points)
    series = [
        Series(_("Grid import"), [_kw(p["grid_w"]) for p in points], "kW", "line"),
        Series(_("Chargers"), [_kw(p["chargers_w"]) for p in points], "kW", "line"),
    ]
    if has_solar:
        series.append(Series(_("Solar"), [_kw(p["solar_w"]) for p in points], "kW", "line"))
    series.append(
        Series(_("Limit"), [_kw(p["limit_w"]) for p in points], "kW", "line", dashed=True)
    )
    return Chart(
        id="power-chart",
        title=_("Last hour (kW)"),
        labels=[p["at"].astimezone(tz).strftime("%H:%M:%S") for p in points],
        series=series,
        unit="kW",
    )


def charger_power(charger: Charger) -> ChargerPower | None:
    found: ChargerPower | None = ChargerPower.objects.filter(charger=charger).first()
    return found
