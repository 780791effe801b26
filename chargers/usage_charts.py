"""The energy and cost charts of the dashboard (`sparklin.charts`, figures from
`chargers.usage`): per day of the current month and per month over the last 12 months, for the
whole community, one site or one person."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from communities.models import Community, Site
from sparklin.charts import Chart, Series

from . import usage

if TYPE_CHECKING:
    from accounts.models import User


def _pair(
    prefix: str, title: str, labels: list[str], figures: list[usage.Usage], currency: str
) -> list[Chart]:
    return [
        Chart(
            id=f"{prefix}-energy",
            title=_("Energy, %(period)s") % {"period": title},
            labels=labels,
            series=[
                Series(_("Energy"), [_value(f, round(f.energy_kwh, 3)) for f in figures], "kWh")
            ],
            unit="kWh",
        ),
        Chart(
            id=f"{prefix}-cost",
            title=_("Cost, %(period)s") % {"period": title},
            labels=labels,
            series=[Series(_("Cost"), [_value(f, float(f.cost)) for f in figures], currency)],
            unit=currency,
        ),
    ]


def _value(figures: usage.Usage, value: float) -> float | None:
    """None for a period without sessions (the chart says "no data" when all are)."""
    return value if figures.sessions else None


def usage_charts(
    community: Community,
    *,
    holder: User | None = None,
    site: Site | None = None,
    live: usage.Live | None = None,
) -> list[Chart]:
    """Four charts: energy and cost per day of this month, energy and cost per month of the
    last 12 months (this one included). Two or three queries."""
    today = timezone.localtime(timezone.now(), community.tz).date()
    month = usage.month_start(today)
    days = usage.days_of(month, usage.add_months(month, 1))
    first = usage.add_months(month, -11)
    # One read of the 12 months by day; this month's days and the months come from it.
    per_day = usage.usage(
        community, first, usage.add_months(month, 1), holder=holder, site=site, live=live
    )
    per_month: dict[date, usage.Usage] = {}
    for day, figures in per_day.items():
        per_month.setdefault(usage.month_start(day), usage.Usage()).add(
            figures.sessions, figures.energy_wh, figures.cost
        )
    months = [usage.add_months(first, i) for i in range(12)]
    empty = usage.Usage()
    currency = community.currency
    return [
        *_pair(
            "usage-day",
            _("per day this month"),
            [_day_label(d) for d in days],
            [per_day.get(d, empty) for d in days],
            currency,
        ),
        *_pair(
            "usage-month",
            _("per month over 12 months"),
            [date_format(m, "M Y") for m in months],
            [per_month.get(m, empty) for m in months],
            currency,
        ),
    ]


def _day_label(day: date) -> str:
    return date_format(day, "j M")
