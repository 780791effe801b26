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


@pytest.mark.django_db
def test_among_reads_what_in_reads_with_one_parameter(community, site, charger):
    from django.db.models import Q
    from django_scopes import scopes_disabled

    from chargers.events.sql import among
    from chargers.models import Charger, Connector

    with scopes_disabled():
        other = Charger.objects.create(community=community, site=site, identity="X" * 48)
        Connector.objects.create(community=community, charger=other, evse_id=1, connector_id=1)
        identities = [charger.identity, other.identity, "nobody"]
        assert set(Charger.objects.filter(among("identity", identities))) == {charger, other}
        # No silent truncation to the column's length: a longer identity matches nothing.
        assert not Charger.objects.filter(among("identity", ["X" * 49])).exists()
        assert not Charger.objects.filter(among("identity", [])).exists()
        assert list(Connector.objects.filter(among("charger_id", {other.pk: None}))) == list(
            Connector.objects.filter(charger_id__in=[other.pk])
        )
        both = among("charger_id", [other.pk]) & Q(evse_id=1)
        assert Connector.objects.filter(both).count() == 1
        with connection.execute_wrapper(_one_parameter):
            list(Charger.objects.filter(among("pk", list(range(1, 500)))))


def _one_parameter(execute, sql, params, many, context):
    if connection.vendor == "postgresql":
        assert "= ANY(" in sql and len(params) == 1, (sql, params)
    return execute(sql, params, many, context)
