"""Numbers, money and energy written for one language — the one home of these rules, for the
portal's pages (the request's language) and the expense notes (their recipient's language).
Babel's CLDR data decides symbols, their place and the separators: `1 234,56 €` in French,
`€1,234.56` in English, any ISO 4217 currency.

Amounts are rounded by their own rule before they are written (`billing.prices.session_cost`);
formatting never rounds a second time (kWh come from whole Wh, prices have 4 decimals).
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

from babel import Locale
from babel.numbers import NumberPattern, parse_pattern
from django.conf import settings
from django.utils import translation

DASH = "—"


def babel_locale(language: str | None = None) -> Locale:
    """The Babel locale of a Django language code (`fr`, `en-us`), the active one by default."""
    return _locale(_code(language))


# A month of expense notes writes some 60,000 amounts and kWh figures: the locale and the parsed
# pattern of each (language, decimals) are looked up once per process, not once per figure
# (Babel's `format_decimal`/`format_currency` parse their pattern string on every call; what is
# left is `NumberPattern.apply`, which those functions end with, given the same arguments).
@functools.lru_cache(maxsize=64)
def _locale(code: str) -> Locale:
    return Locale.parse(translation.to_locale(code))


@functools.lru_cache(maxsize=16)
def _number_pattern(decimals: int) -> NumberPattern:
    return parse_pattern("#,##0" + ("." + "0" * decimals if decimals else ""))


@functools.lru_cache(maxsize=256)
def _money_pattern(code: str, decimals: int) -> NumberPattern:
    pattern = _locale(code).currency_formats["standard"].pattern.split(";")[0]
    return parse_pattern(pattern.replace("0.00", "0" + ("." + "0" * decimals if decimals else "")))


def _code(language: str | None) -> str:
    return language or translation.get_language() or settings.LANGUAGE_CODE


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def number(value: Any, decimals: int, language: str | None = None) -> str:
    """`value` with exactly `decimals` places and thousands grouping."""
    if value is None or value == "":
        return DASH
    code = _code(language)
    text: str = _number_pattern(decimals).apply(
        _decimal(value), _locale(code), decimal_quantization=True, group_separator=True
    )
    return text


def money(value: Any, currency: str, language: str | None = None, decimals: int = 2) -> str:
    """An amount in `currency`: the locale's own currency pattern with `decimals` places
    (2 for amounts, 4 for a kWh price)."""
    if value is None or value == "":
        return DASH
    code = _code(language)
    text: str = _money_pattern(code, decimals).apply(
        _decimal(value),
        _locale(code),
        currency=currency,
        currency_digits=False,
        decimal_quantization=True,
        group_separator=True,
    )
    return text


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
