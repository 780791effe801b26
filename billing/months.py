"""Months as the billing app reads them: parsed from `YYYY-MM`, refused while not over in the
community's time zone, and turned into queryset filters."""

from datetime import datetime

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from communities.models import Community
from sparklin.dates import month_bounds

from .services import BillingError


def check_month(community: Community, year: int, month: int, now: datetime | None = None):
    """Refuse a month that does not exist or is not over yet in the community's time zone:
    an issued note covers a whole month."""
    if not (2000 <= year <= 9999 and 1 <= month <= 12):
        raise BillingError(_("Invalid month: expected YYYY-MM, e.g. 2025-03."))
    _start, end = month_bounds(community, year, month)
    if end > (now or timezone.now()):
        raise BillingError(
            _("%(month)s is not over yet: its expense notes are issued once it has ended.")
            % {"month": f"{year:04d}-{month:02d}"}
        )


def parse_months(months) -> list[tuple[int, int]]:
    """`["2026-10", "2026-09"]` → `[(2026, 9), (2026, 10)]` (forms validated the format)."""
    return sorted({(int(m[:4]), int(m[5:7])) for m in months})


def months_q(parsed) -> Q:
    q = Q(pk__in=[])
    for year, month in parsed:
        q |= Q(year=year, month=month)
    return q


def previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)
