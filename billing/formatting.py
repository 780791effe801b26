"""Numbers, money, dates and durations written for one language, whatever language the request
or the worker runs in: expense notes follow their recipient's language (`1 234,56 €` in French,
`€1,234.56` in English). Django's own locale formats, forced on (grouping included)."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import formats, translation
from django.utils.translation import gettext as _

CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "CHF": "CHF"}
NBSP = "\u00a0"


def number(value, decimals: int, language: str) -> str:
    """`value` with `decimals` places and thousands grouping, in `language`."""
    if value is None:
        return "—"
    with translation.override(language):
        return formats.number_format(Decimal(value), decimals, use_l10n=True, force_grouping=True)


def money(value, currency: str, language: str, decimals: int = 2) -> str:
    """`1 234,56 €` in French, `€1,234.56` in English."""
    if value is None:
        return "—"
    symbol = CURRENCY_SYMBOLS.get(currency, currency)
    amount = number(value, decimals, language)
    if language.startswith("en") and len(symbol) == 1:
        return f"-{symbol}{amount[1:]}" if amount.startswith("-") else f"{symbol}{amount}"
    return f"{amount}{NBSP}{symbol}"


def kwh(wh, language: str) -> str:
    """Wh → kWh with 3 decimals."""
    return number(Decimal(wh) / 1000, 3, language)


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
