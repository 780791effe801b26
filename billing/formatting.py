"""Numbers, money, dates and durations written for one language, whatever language the request
or the worker runs in: expense notes follow their recipient's language (`1 234,56 €` in French,
`€1,234.56` in English). Numbers, money and kWh come from `sparklin.formatting` (Babel, the one
home of those rules, shared with the portal's pages); dates and durations are Django's."""

import functools
from datetime import date as date_type
from datetime import datetime, timedelta

from django.utils import formats, translation
from django.utils.translation import gettext as _

from sparklin.formatting import kwh, money, number

__all__ = ["number", "money", "kwh", "date", "day", "time", "month", "duration"]


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
    return _duration(max(0, int(delta.total_seconds() // 60)), language)


def day(value: date_type, language: str) -> str:
    """`date` of a calendar day (a session's): a month of notes prints the same 31 days
    thousands of times, each written once per process."""
    return _day(value, language)


# Activating a language and formatting through Django cost more than the rest of a note's line:
# the few hundred distinct durations and days are written once per process and language.
@functools.lru_cache(maxsize=4096)
def _duration(minutes: int, language: str) -> str:
    with translation.override(language):
        return _("%(hours)d h %(minutes)02d") % {"hours": minutes // 60, "minutes": minutes % 60}


@functools.lru_cache(maxsize=4096)
def _day(value: date_type, language: str) -> str:
    return date(datetime(value.year, value.month, value.day), language)
