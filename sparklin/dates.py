"""Calendar months in a community's time zone: the one home of month bounds (dashboard totals,
expense notes, exports). Depends on nothing but a `tz` attribute, so every app can use it."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Protocol

from django.utils import timezone


class HasTimeZone(Protocol):
    @property
    def tz(self) -> tzinfo: ...


def month_bounds(community: HasTimeZone, year: int, month: int) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month in the community's time zone, as aware datetimes."""
    tz = community.tz
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return start, end


def current_month(community: HasTimeZone) -> tuple[int, int]:
    """(year, month) of today in the community's time zone."""
    today = timezone.localtime(timezone.now(), community.tz)
    return today.year, today.month
