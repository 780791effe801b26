"""Energy and cost of a period: the one home of the dashboard's totals and charts (per day, per
month; the whole community, one site, one person).

A period is counted by the local day its sessions started on (the community's time zone), as
expense notes and exports count months. Completed sessions count with their recorded energy and
cost; sessions in progress with their energy and cost so far (`selectors.live_energy_wh`,
`billing.prices.session_cost`: the one rounding rule).

Completed sessions of the whole community or of one site are read from `SessionDay`, the
per-day rollup PostgreSQL keeps exact with triggers (a year is ~365 rows per site instead of a
million sessions); one person's are summed from their own sessions (a few hundred a year,
through the holder index), and so is everything on SQLite (the demo). Sessions in progress are
at most one per outlet and always read live."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import (
    Case,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    Func,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Greatest, TruncDate

from billing.prices import session_cost
from communities.models import Community, Site

from .models import ChargingSession, SessionDay

if TYPE_CHECKING:
    from accounts.models import User


@dataclass
class Usage:
    sessions: int = 0
    energy_wh: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)

    def add(self, sessions: int, energy_wh: Decimal | None, cost: Decimal | None) -> None:
        self.sessions += sessions
        self.energy_wh += energy_wh or Decimal(0)
        self.cost += cost or Decimal(0)

    @property
    def energy_kwh(self) -> float:
        return float(self.energy_wh / 1000)


def rollup_available() -> bool:
    """`SessionDay` is kept by PostgreSQL triggers (migration chargers 0007); not on SQLite."""
    return connection.vendor == "postgresql"


def _bounds(community: Community, first: date, end: date) -> tuple[datetime, datetime]:
    tz = community.tz
    return datetime.combine(first, time(), tz), datetime.combine(end, time(), tz)


# (local start day, sessions, energy so far, cost so far) of the sessions in progress, by day.
Live = list[tuple[date, int, Decimal, Decimal]]


def live_sessions(
    community: Community, *, holder: User | None = None, site: Site | None = None
) -> Live:
    """The sessions in progress (at most one per outlet) added up per local day they started
    on: their number, energy so far and cost so far. Computed once, it can serve several
    periods (`usage(live=…)`).

    On PostgreSQL the database adds them up (a few rows whatever the fleet: 3,000 sessions in
    progress used to be fetched and priced one by one in Python) with `session_cost_sql`, the
    SQL twin of `billing.prices.session_cost`; SQLite (the demo, a handful of sessions) prices
    each one in Python, where ROUND works on floats."""
    # A session without a start time (a stop never seen starting) belongs to no period.
    qs = ChargingSession.objects.filter(
        state=ChargingSession.State.ACTIVE, started_at__isnull=False
    )
    if holder is not None:
        qs = qs.filter(holder=holder)
    if site is not None:
        qs = qs.filter(charger__site=site)
    # Energy so far, computed by the database.
    live_wh = Case(
        When(
            meter_last_wh__isnull=False,
            meter_start_wh__isnull=False,
            then=Greatest(F("meter_last_wh") - F("meter_start_wh"), Value(Decimal(0))),
        ),
        default=F("energy_wh"),
        output_field=DecimalField(max_digits=14, decimal_places=1),
    )
    local_day = TruncDate("started_at", tzinfo=community.tz)
    if rollup_available():
        per_day = (
            qs.annotate(local_day=local_day, live_wh=live_wh)
            .values("local_day")
            .annotate(
                n=Count("pk"),
                e=Sum("live_wh"),
                c=Sum(session_cost_sql(F("live_wh"), F("price_per_kwh"))),
            )
            .values_list("local_day", "n", "e", "c")
            .order_by()
        )
        return [(day, n, e or Decimal(0), c or Decimal(0)) for day, n, e, c in per_day]
    rows: dict[date, tuple[int, Decimal, Decimal]] = {}
    for day, energy, price in qs.values_list(local_day, live_wh, "price_per_kwh"):
        energy = energy or Decimal(0)
        n, e, c = rows.get(day, (0, Decimal(0), Decimal(0)))
        rows[day] = (n + 1, e + energy, c + (session_cost(energy, price) or Decimal(0)))
    return [(day, n, e, c) for day, (n, e, c) in rows.items()]


def session_cost_sql(energy_wh: Any, price_per_kwh: Any) -> Func:
    """`billing.prices.session_cost` in PostgreSQL: energy (Wh) × price (per kWh) rounded to
    the cent, half away from zero (numeric ROUND, exact like Python's ROUND_HALF_UP on
    Decimal); NULL without a price. `tests/portal/test_fleet_scale.py` checks they agree."""
    return Func(
        ExpressionWrapper(
            energy_wh * price_per_kwh / Value(Decimal(1000)),
            output_field=DecimalField(max_digits=30, decimal_places=10),
        ),
        Value(2),
        function="ROUND",
        output_field=DecimalField(max_digits=12, decimal_places=2),
    )


def _completed_by_day(
    community: Community, first: date, end: date, holder: User | None, site: Site | None
) -> list[tuple[date, int, Decimal | None, Decimal | None]]:
    if holder is None and rollup_available():
        days = SessionDay.objects.filter(day__gte=first, day__lt=end)
        if site is not None:
            days = days.filter(site=site)
        return list(
            days.values("day")
            .annotate(n=Sum("sessions"), e=Sum("energy_wh"), c=Sum("cost"))
            .values_list("day", "n", "e", "c")
        )
    start, stop = _bounds(community, first, end)
    sessions = ChargingSession.objects.filter(
        state=ChargingSession.State.COMPLETED, started_at__gte=start, started_at__lt=stop
    )
    if holder is not None:
        sessions = sessions.filter(holder=holder)
    if site is not None:
        sessions = sessions.filter(charger__site=site)
    return list(
        sessions.annotate(local_day=TruncDate("started_at", tzinfo=community.tz))
        .values("local_day")
        .annotate(n=Count("pk"), e=Sum("energy_wh"), c=Sum("cost"))
        .values_list("local_day", "n", "e", "c")
    )


def usage(
    community: Community,
    first: date,
    end: date,
    *,
    holder: User | None = None,
    site: Site | None = None,
    key: Callable[[date], Hashable] | None = None,
    live: Live | None = None,
) -> dict[Any, Usage]:
    """Sessions, energy and cost of the sessions that started on local days [first, end),
    grouped by `key(day)` (default: the day itself). Two queries whatever the fleet, one when
    `live` (`live_sessions` with the same holder and site) is given."""
    key = key or (lambda d: d)
    out: dict[Any, Usage] = defaultdict(Usage)
    for day, n, energy, cost in _completed_by_day(community, first, end, holder, site):
        out[key(day)].add(n or 0, energy, cost)
    if live is None:
        live = live_sessions(community, holder=holder, site=site)
    for day, n, energy, cost in live:
        if first <= day < end:
            out[key(day)].add(n, energy, cost)
    return out


def total(
    community: Community,
    first: date,
    end: date,
    *,
    holder: User | None = None,
    site: Site | None = None,
    live: Live | None = None,
) -> Usage:
    """Sessions, energy and cost of local days [first, end), added up."""
    figures = usage(community, first, end, holder=holder, site=site, key=lambda d: None, live=live)
    return figures.get(None, Usage())


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def days_of(first: date, end: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((end - first).days)]
