"""Dates in the person's language, 24-hour where the locale expects it (English included)."""

from datetime import datetime
from zoneinfo import ZoneInfo

from django.utils import formats, translation

AT = datetime(2026, 2, 12, 15, 19, tzinfo=ZoneInfo("Europe/Paris"))


def test_english_short_datetime_is_day_first_and_24_hour():
    with translation.override("en"):
        assert formats.date_format(AT, "SHORT_DATETIME_FORMAT") == "12/02/2026 15:19"
        assert formats.date_format(AT, "TIME_FORMAT") == "15:19"


def test_french_short_datetime():
    with translation.override("fr"):
        assert formats.date_format(AT, "SHORT_DATETIME_FORMAT") == "12/02/2026 15:19"
