"""run_meters against real servers on loopback: a pymodbus server per meter model, the
machine's Mosquitto. Readings reach the database, failures and recoveries are shown on the
meter, configuration changes are picked up without a restart."""

import pytest

from meters.models import Meter, MeterReading

from ..builders import make_community, make_meter, make_site
from .servers import ModbusMeterServer, Publisher, RunnerThread, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PHASES = {"power_w_l1": 4200.5, "power_w_l2": -1300.5, "power_w_l3": 860.0}
MODEL_VALUES = {
    **PHASES,
    "power_w_total": 3760.0,
    "current_a_l1": 18.25,
    "current_a_l2": 5.5,
    "current_a_l3": 3.75,
    "energy_import_wh": 12_345_600.0,
    "energy_export_wh": 654_300.0,
}


def readings_of(meter):
    rows = MeterReading.objects.with_scopes_disabled().filter(meter_id=meter.pk)
    return list(rows.order_by("at"))


def meter_row(meter):
    return Meter.objects.with_scopes_disabled().get(pk=meter.pk)


@pytest.fixture
def site():
    return make_site(make_community())


@pytest.fixture
def runner():
    thread = RunnerThread()
    yield thread.runner
    thread.close()


@pytest.fixture
def publisher():
    p = Publisher()
    yield p
    p.close()


@pytest.mark.parametrize("model", ["sdm630", "abb_b23", "em24"])
def test_each_modbus_model_is_read_from_a_real_server(site, model):
    server = ModbusMeterServer(model, MODEL_VALUES, unit=3)
    meter = make_meter(
        site,
        kind=Meter.Kind.MODBUS,
        config={"host": "127.0.0.1", "port": server.port, "unit": 3, "model": model, "interval": 1},
    )
    thread = RunnerThread()
    try:
        reading = wait_until(lambda: (readings_of(meter) or [None])[-1])
    finally:
        thread.close()
        server.close()
    got = {f: getattr(reading, f) for f in MODEL_VALUES}
    assert got == pytest.approx(MODEL_VALUES, rel=1e-6, abs=0.01)
    assert meter_row(meter).last_reading_at == reading.at
    assert meter_row(meter).last_error == ""


def test_a_modbus_meter_that_drops_off_is_shown_failing_then_read_again(site, runner):
    server = ModbusMeterServer("sdm630", PHASES)
    meter = make_meter(
        site,
        kind=Meter.Kind.MODBUS,
        config={"host": "127.0.0.1", "port": server.port, "model": "sdm630", "interval": 1},
    )
    try:
        wait_until(lambda: readings_of(meter))
        server.stop()
        error = wait_until(lambda: meter_row(meter).last_error)
        assert error.startswith(f"Modbus 127.0.0.1:{server.port}:")
        server.values["power_w_l1"] = 9999.0
        server.start()
        wait_until(lambda: readings_of(meter)[-1].power_w_l1 == 9999.0, timeout=30)
        wait_until(lambda: meter_row(meter).last_error == "")
    finally:
        server.close()


def test_a_wrong_unit_id_is_an_error_on_the_meter(site, runner):
    server = ModbusMeterServer("em24", PHASES, unit=1)
    meter = make_meter(
        site,
        kind=Meter.Kind.MODBUS,
        config={"host": "127.0.0.1", "port": server.port, "unit": 9, "model": "em24"},
    )
    try:
        assert "Modbus" in wait_until(lambda: meter_row(meter).last_error)
        assert readings_of(meter) == []
    finally:
        server.close()


def test_mqtt_meters_share_the_broker_and_each_reads_its_topic(site, runner, publisher):
    tasmota = make_meter(
        site,
        name="Tasmota",
        kind=Meter.Kind.MQTT,
        config={
            "topic": publisher.topic("tele/grid/SENSOR"),
            "paths": {f"power_w_l{n}": f"ENERGY.Power.{n - 1}" for n in (1, 2, 3)},
        },
    )
    shelly = make_meter(
        site,
        name="Shelly",
        role=Meter.Role.SOLAR,
        kind=Meter.Kind.MQTT,
        config={
            "topic": publisher.topic("pv/status/em:0"),
            "paths": {"power_w_total": "total_act_power"},
            "scale": 1000,
            "invert": True,
        },
    )
    # Subscriptions are made once the runner has loaded the meters: publish until one lands.
    wait_until(
        lambda: (
            publisher.publish("tele/grid/SENSOR", {"ENERGY": {"Power": [1200, 900, -300]}})
            or readings_of(tasmota)
        ),
        every=0.3,
    )
    wait_until(
        lambda: (
            publisher.publish("pv/status/em:0", {"total_act_power": -2.5}) or readings_of(shelly)
        ),
        every=0.3,
    )
    grid = readings_of(tasmota)[-1]
    assert (grid.power_w_l1, grid.power_w_l2, grid.power_w_l3, grid.power_w_total) == (
        1200,
        900,
        -300,
        1800,
    )
    assert readings_of(shelly)[-1].power_w_total == 2500.0
    assert meter_row(tasmota).last_reading_at is not None


def test_a_bad_mqtt_payload_is_shown_and_a_topic_change_is_picked_up(site, runner, publisher):
    meter = make_meter(
        site,
        kind=Meter.Kind.MQTT,
        config={"topic": publisher.topic("a"), "paths": {"power_w_total": "P"}},
    )
    error = wait_until(
        lambda: publisher.publish("a", {"Q": 1}) or meter_row(meter).last_error, every=0.3
    )
    assert "no key P" in error and readings_of(meter) == []
    meter.config = {"topic": publisher.topic("b"), "paths": {"power_w_total": "P"}}
    meter.save()
    wait_until(lambda: publisher.publish("b", {"P": 42}) or readings_of(meter), every=0.3)
    assert [r.power_w_total for r in readings_of(meter)] == [42.0]
    wait_until(lambda: meter_row(meter).last_error == "")


def test_an_unreachable_broker_is_shown_on_its_meters(site, runner):
    from bench import free_port

    meter = make_meter(
        site,
        kind=Meter.Kind.MQTT,
        config={
            "broker": f"mqtt://127.0.0.1:{free_port()}",
            "topic": "x",
            "paths": {"power_w_total": "P"},
        },
    )
    assert "MQTT broker 127.0.0.1" in wait_until(lambda: meter_row(meter).last_error)


def test_a_disabled_meter_is_no_longer_read(site, runner):
    meter = make_meter(site, kind=Meter.Kind.SIMULATED, config={"interval": 1})
    wait_until(lambda: readings_of(meter))
    meter.enabled = False
    meter.save()
    wait_until(lambda: meter.pk not in runner.specs)
    count = len(readings_of(meter))
    import time

    time.sleep(1.5)
    assert len(readings_of(meter)) == count


def test_run_meters_survives_terminated_database_connections(site, runner):
    """A database restart is an event, not an outage: the runner's connection is cut while it
    reads a meter; readings keep arriving once a new connection is opened."""
    import psycopg
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL")
    meter = make_meter(site, kind=Meter.Kind.SIMULATED, config={"interval": 1})
    wait_until(lambda: readings_of(meter))
    db = connection.settings_dict
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        mine = cursor.fetchone()[0]
    with psycopg.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432
    ) as conn:
        cut = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s",
            [mine],
        ).fetchone()[0]
    assert cut >= 1
    count = len(readings_of(meter))
    wait_until(lambda: len(readings_of(meter)) >= count + 2, timeout=20)
