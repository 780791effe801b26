"""Numbers, money, dates and durations written for one language, whatever language the request
or the worker runs in: expense notes follow their recipient's language (`1 234,56 €` in French,
`€1,234.56` in English). Numbers, money and kWh come from `sparklin.formatting` (Babel, the one
home of those rules, shared with the portal's pages); dates and durations are Django's."""

from datetime import datetime, timedelta

from django.utils import formats, translation
from django.utils.translation import gettext as _

from sparklin.formatting import kwh, money, number

__all__ = ["number", "money", "kwh", "date", "time", "month", "duration"]


# A day unambiguous to its reader: 03/11/2026 in French, 3 Nov 2026 in English (never the
# US month-first order).
DATE_FORMATS = {"fr": "d/m/Y", "en": "j M Y"}


def date(value: datetime, language: str) -> str:
    with translation.override(language):
        return formats.date_format(value, DATE_FORMATS.get(language[:2], "Y-m-d"), use_l10n=True)


def time(value: datetime) -> str:
    return value.strftime("%H:%M")


def month(year: int, month_number: int, language: str) -> str:
    """`novembre 2026` / `November 2026`."""
    with translation.override(language):
        return formats.date_format(datetime(year, month_number, 1), "F Y", use_l10n=True)


def duration(delta: timedelta, language: str) -> str:
    """`2 h 05`: hours and minutes, rounded down to the minute."""
    minutes = max(0, int(delta.total_seconds() // 60))
    with translation.override(language):
        return _("%(hours)d h %(minutes)02d") % {"hours": minutes // 60, "minutes": minutes % 60}
