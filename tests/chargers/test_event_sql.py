"""The worker's bulk SQL helpers (`chargers/events/sql.py`): times read with psycopg's C parser
are the values Django's own loader gives."""

from datetime import UTC, datetime
from decimal import Decimal

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


def test_rows_param_gives_the_json_module_s_values_and_falls_back_on_what_orjson_refuses():
    """orjson encodes the rows (speed); the text it gives decodes to what the json module's
    did, and what it refuses (an integer beyond 64 bits a charger put in a logged frame) still
    travels, through the json module."""
    import json
    from zoneinfo import ZoneInfo

    from chargers.events.sql import _rows_param

    paris = ZoneInfo("Europe/Paris")
    rows = [
        [
            1,
            Decimal("12345.670"),
            datetime(2026, 3, 2, 8, 0, 1, 123456, tzinfo=UTC),
            datetime(2026, 7, 1, 23, 0, tzinfo=paris),
            "Énergie ✓",
            {"a": [1, 2.5, None, True]},
            None,
        ]
    ]
    expected = json.dumps(rows, default=_json_default, ensure_ascii=False)
    [decoded] = json.loads(_rows_param(rows))
    [wanted] = json.loads(expected)
    assert decoded[:2] == wanted[:2] and decoded[4:] == wanted[4:]
    for got, want in zip(decoded[2:4], wanted[2:4], strict=True):
        assert datetime.fromisoformat(got) == datetime.fromisoformat(want)
    huge = [[{"value": 10**30}]]
    assert json.loads(_rows_param(huge)) == [[{"value": 10**30}]]


@pytest.mark.django_db
def test_a_logged_frame_with_a_huge_integer_is_recorded(community, site, charger):
    from chargers.events import process_events
    from chargers.models import OcppMessage

    frame = '[2,"big-1","DataTransfer",{"vendorId":"x","data":123456789012345678901234567890}]'
    event = {
        "identity": charger.identity,
        "kind": "message",
        "received_at": "2026-03-02T08:00:00+00:00",
        "payload": {
            "direction": "in",
            "message_type": 2,
            "unique_id": "big-1",
            "action": "DataTransfer",
            "frame": frame,
        },
    }
    assert process_events([event])["quarantined"] == 0
    row = OcppMessage.objects.with_scopes_disabled().get(unique_id="big-1")
    assert row.payload["data"] == 123456789012345678901234567890


@pytest.mark.django_db
def test_among_reads_what_in_reads_with_one_parameter(community, site, charger):
    from django.db.models import Q
    from django_scopes import scope

    from chargers.events.sql import among
    from chargers.models import Charger, Connector

    with scope(community=community):
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
        # The community scope adds its own parameter; the 499 ids are one array.
        assert "= ANY(" in sql and " IN (" not in sql and len(params) <= 2, (sql, params)
    return execute(sql, params, many, context)


def _rows_of_each_kind(charger):
    """A charger (JSON configuration, a time with microseconds), an outlet, a session and a
    card: the rows the worker reads, with the values Django converts."""
    from chargers.models import ChargeCard, ChargingSession, Connector

    charger.configuration = {"MeterValueSampleInterval": "60", "nested": [1, {"a": None}]}
    charger.last_seen = datetime(2026, 3, 2, 8, 0, 1, 5, tzinfo=UTC)
    charger.save()
    outlet = Connector.objects.create(
        community=charger.community, charger=charger, evse_id=1, connector_id=1
    )
    ChargingSession.objects.create(
        community=charger.community,
        charger=charger,
        connector=outlet,
        transaction_id="7",
        meter_start_wh=Decimal("12.5"),
    )
    ChargeCard.objects.create(community=charger.community, uid="04A23B11")
    return outlet


def _assert_same_instances(fast, orm):
    assert len(fast) == len(orm) >= 1
    for a, b in zip(fast, orm, strict=True):
        assert type(a) is type(b)
        assert {k: v for k, v in vars(a).items() if k != "_state"} == {
            k: v for k, v in vars(b).items() if k != "_state"
        }
        assert (a._state.adding, a._state.db) == (b._state.adding, b._state.db)
        assert a == b


@pytest.mark.django_db
def test_load_rows_builds_the_instances_the_orm_builds(community, charger):
    from django.db.models import signals
    from django_scopes import scope

    from chargers.events.sql import load_rows
    from chargers.models import ChargeCard, Charger, ChargingSession, Connector

    with scope(community=community):
        outlet = _rows_of_each_kind(charger)
        for model in (Charger, Connector, ChargingSession, ChargeCard):
            # The shortcut skips the init signals: nobody may listen to them on these models.
            for signal in (signals.pre_init, signals.post_init):
                assert not signal.has_listeners(model), (model, signal)
            orm = list(model.objects.order_by("pk"))
            fast = load_rows(model.objects.order_by("pk").select_for_update(of=("self",)))
            _assert_same_instances(fast, orm)
        session = load_rows(ChargingSession.objects.all())[0]
        assert session.connector == outlet  # relations still load on access
        session.energy_wh = Decimal("1.5")
        session.save(update_fields=["energy_wh"])  # and a loaded instance saves as usual
        assert ChargingSession.objects.get().energy_wh == Decimal("1.5")


@pytest.mark.django_db
def test_load_where_builds_the_instances_the_orm_builds(community, charger):
    """The worker's reads composed once (`sql.load_where`, PostgreSQL): the same instances as
    the ORM's, JSON decoded, whatever follows the table name (conditions, order, lock)."""
    if connection.vendor != "postgresql":
        pytest.skip("raw PostgreSQL reads")
    from django_scopes import scope

    from chargers.events.sql import load_where
    from chargers.models import ChargeCard, Charger, ChargingSession, Connector

    with scope(community=community):
        _rows_of_each_kind(charger)
        for model in (Charger, Connector, ChargingSession, ChargeCard):
            orm = list(model.objects.order_by("pk"))
            fast = load_where(
                model, "WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE", [[o.pk for o in orm]]
            )
            _assert_same_instances(fast, orm)
        assert load_where(Charger, "WHERE false", []) == []
        read = load_where(Charger, "WHERE id = %s", [charger.pk])[0]
        assert read.configuration == {"MeterValueSampleInterval": "60", "nested": [1, {"a": None}]}
        assert read.last_seen.tzinfo is connection.timezone


@pytest.mark.parametrize(
    "sample",
    [
        {"value": "7.5", "unit": "kWh"},
        {"value": "7.5", "unit": " KW ", "measurand": "Power.Active.Import", "phase": "L1"},
        {"value": "230", "unit": "V", "measurand": "Voltage", "phase": "L2-N", "context": "x"},
        {"value": "12", "measurand": "SoC", "unit": "Percent"},
        {"value": "3", "measurand": "Energy.Active.Import.Interval"},
        {"value": "1", "measurand": "M\x00" + "x" * 80, "phase": "L1" * 9, "unit": "k"},
        {"value": "1", "measurand": 1, "phase": True, "context": 1.0, "unit": ["kWh"]},
        {"value": "1", "measurand": None, "phase": None, "context": None, "unit": None},
    ],
)
def test_sample_labels_are_what_the_functions_say(sample):
    from chargers.events.values import (
        clean_text,
        measurand,
        sample_labels,
        sample_unit,
        sample_value,
        to_decimal,
    )

    for _ in range(2):  # computed, then from the cache
        labels = sample_labels(sample)
        assert labels.measurand == measurand(sample)
        assert labels.name == clean_text(measurand(sample), 60)
        assert labels.phase == clean_text(sample.get("phase"), 10)
        assert labels.context == clean_text(sample.get("context"), 30)
        assert labels.unit == clean_text(sample_unit(sample), 10)
        value = to_decimal(sample["value"])
        assert (value * 1000 if labels.kilo else value) == sample_value(sample)
    # 1, 1.0 and True are equal keys to a plain cache: not to this one.
    assert sample_labels({"phase": 1}).phase == "1"
    assert sample_labels({"phase": True}).phase == "True"
