"""sparklin.formatting writes numbers and money with the locale's parsed pattern cached per
process: the same text as Babel's own `format_decimal`/`format_currency` given the pattern."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from babel.numbers import format_currency, format_decimal
from django.utils import translation

from billing import formatting as note_fmt
from sparklin import formatting

VALUES = [0, 1, -1, "0.5", "1234.56", "-1234.5", "0.2516", 1234567.891, Decimal("99999999.999")]


@pytest.mark.parametrize("language", ["fr", "en", "de", "en-us", "pt-br"])
def test_money_and_numbers_are_babels_text(language):
    locale = formatting.babel_locale(language)
    standard = locale.currency_formats["standard"].pattern.split(";")[0]
    for value in VALUES:
        for currency in ("EUR", "USD", "CHF", "JPY"):
            for decimals in (0, 2, 4):
                pattern = standard.replace("0.00", "0" + ("." + "0" * decimals if decimals else ""))
                expected = format_currency(
                    Decimal(str(value)), currency, format=pattern, locale=locale,
                    currency_digits=False,
                )  # fmt: skip
                assert formatting.money(value, currency, language, decimals) == expected
        for decimals in (0, 2, 3):
            pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
            expected = format_decimal(Decimal(str(value)), format=pattern, locale=locale)
            assert formatting.number(value, decimals, language) == expected


def test_the_active_language_is_used_when_none_is_given():
    with translation.override("fr"):
        assert formatting.money("1234.5", "EUR") == "1\u202f234,50\u00a0€"
    with translation.override("en"):
        assert formatting.money("1234.5", "EUR") == "€1,234.50"


def test_cached_days_and_durations_follow_their_language():
    day = date(2025, 10, 26)
    assert note_fmt.day(day, "fr") == "26/10/2025"
    assert note_fmt.day(day, "en") == "26 Oct 2025"
    assert note_fmt.duration(timedelta(minutes=125), "en") == "2 h 05"
    assert note_fmt.duration(timedelta(seconds=-5), "fr") == "0 h 00"
