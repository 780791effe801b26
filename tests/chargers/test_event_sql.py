"""The worker's bulk SQL helpers (`chargers/events/sql.py`): times read with psycopg's C parser
are the values Django's own loader gives."""

from datetime import UTC, datetime

import pytest
from django.db import connection

from chargers.events.sql import _FastTimestamptzLoader, _json_default, use_fast_timestamps


@pytest.mark.django_db
def test_fast_timestamps_read_the_same_values_as_django():
    def read():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT '2026-03-02 08:00:01.123456+00'::timestamptz, "
                "'1999-12-31 23:59:59-05:30'::timestamptz, NULL::timestamptz"
            )
            return cursor.fetchone()

    before = read()
    use_fast_timestamps()
    use_fast_timestamps()  # once per connection is enough; a second call changes nothing
    from psycopg.pq import Format

    loader = connection.connection.adapters.get_loader(
        connection.connection.adapters.types["timestamptz"].oid, Format.TEXT
    )
    assert issubclass(loader, _FastTimestamptzLoader)
    after = read()
    assert after == before
    assert after[0] == datetime(2026, 3, 2, 8, 0, 1, 123456, tzinfo=UTC)
    assert [v.tzinfo for v in after[:2]] == [v.tzinfo for v in before[:2]]
    assert after[2] is None
    # Django keeps it: its own check compares the loader's time zone with the connection's.
    with connection.cursor():
        pass
    kept = connection.connection.adapters.get_loader(
        connection.connection.adapters.types["timestamptz"].oid, Format.TEXT
    )
    assert kept is loader


def test_rows_travel_as_exact_text():
    from decimal import Decimal

    assert _json_default(Decimal("12.300")) == "12.300"
    assert _json_default(datetime(2026, 3, 2, 8, 0, tzinfo=UTC)) == "2026-03-02T08:00:00+00:00"
