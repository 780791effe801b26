"""Numbers, money and energy written for one language — the one home of these rules, for the
portal's pages (the request's language) and the expense notes (their recipient's language).
Babel's CLDR data decides symbols, their place and the separators: `1 234,56 €` in French,
`€1,234.56` in English, any ISO 4217 currency.

Amounts are rounded by their own rule before they are written (`billing.prices.session_cost`);
formatting never rounds a second time (kWh come from whole Wh, prices have 4 decimals).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from babel import Locale
from babel.numbers import format_currency, format_decimal
from django.conf import settings
from django.utils import translation

DASH = "—"


def babel_locale(language: str | None = None) -> Locale:
    """The Babel locale of a Django language code (`fr`, `en-us`), the active one by default."""
    code = language or translation.get_language() or settings.LANGUAGE_CODE
    return Locale.parse(translation.to_locale(code))


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def number(value: Any, decimals: int, language: str | None = None) -> str:
    """`value` with exactly `decimals` places and thousands grouping."""
    if value is None or value == "":
        return DASH
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(_decimal(value), format=pattern, locale=babel_locale(language))


def money(value: Any, currency: str, language: str | None = None, decimals: int = 2) -> str:
    """An amount in `currency`: the locale's own currency pattern with `decimals` places
    (2 for amounts, 4 for a kWh price)."""
    if value is None or value == "":
        return DASH
    locale = babel_locale(language)
    pattern = locale.currency_formats["standard"].pattern.split(";")[0]
    pattern = pattern.replace("0.00", "0" + ("." + "0" * decimals if decimals else ""))
    return format_currency(
        _decimal(value), currency, format=pattern, locale=locale, currency_digits=False
    )


def kwh(wh: Any, language: str | None = None) -> str:
    """Wh → kWh with 3 decimals."""
    if wh is None or wh == "":
        return ""
    return number(_decimal(wh) / 1000, 3, language)


def price_per_kwh(value: Any, currency: str, language: str | None = None) -> str:
    """A kWh price: 4 decimals and the unit, `0,2516 €/kWh`."""
    if value is None or value == "":
        return DASH
    return f"{money(value, currency, language, decimals=4)}/kWh"
