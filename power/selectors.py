"""Reads for the Power page, the dashboard alert and the charger page (always inside the
community's scope, like every portal read)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from chargers.models import Charger, ChargingSession
from meters.models import Meter
from meters.readings import is_silent
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


def charger_lines(site: Site) -> list[ChargerLine]:
    chargers = list(Charger.objects.filter(site=site).order_by("identity"))
    powers = {p.charger_id: p for p in ChargerPower.objects.filter(charger__site=site)}
    charging = set(
        ChargingSession.objects.filter(
            charger__site=site, state=ChargingSession.State.ACTIVE
        ).values_list("charger_id", flat=True)
    )
    return [ChargerLine(c, powers.get(c.pk), c.pk in charging) for c in chargers]


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


def live_fingerprint(site: Site, lines: list[ChargerLine]) -> str:
    sample = latest_sample(site)
    return fingerprint(
        sample.pk if sample else None,
        [
            (
                line.charger.pk,
                line.charging,
                line.status,
                line.power.limit_a if line.power else None,
                line.power.draw_a if line.power else None,
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
