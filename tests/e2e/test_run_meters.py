"""`python manage.py run_meters` as operators run it: a child process reading a pymodbus
server and an MQTT meter on the machine's Mosquitto, picking up a meter added while it runs,
logging each state change on one line, and stopping cleanly on SIGTERM."""

import sys

import pytest

from meters.models import Meter, MeterReading
from tests import builders

from ..meters.servers import ModbusMeterServer, Publisher, wait_until
from .processes import Process, child_env

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def count(meter):
    return MeterReading.objects.with_scopes_disabled().filter(meter_id=meter.pk).count()


def test_run_meters_reads_modbus_and_mqtt_meters_and_stops_on_sigterm():
    site = builders.make_site(builders.make_community())
    server = ModbusMeterServer("abb_b23", {"power_w_l1": 1500.0, "power_w_total": 1500.0})
    publisher = Publisher()
    modbus = builders.make_meter(
        site,
        name="ABB",
        kind=Meter.Kind.MODBUS,
        config={"host": "127.0.0.1", "port": server.port, "model": "abb_b23", "interval": 1},
    )
    process = Process(
        "run_meters",
        [sys.executable, "manage.py", "run_meters", "--reload", "0.5"],
        child_env(LOG_LEVEL="INFO"),
        ready_text="run_meters: started",
    ).start()
    try:
        wait_until(lambda: count(modbus) >= 2, timeout=30)
        mqtt = builders.make_meter(
            site,
            name="PV",
            role=Meter.Role.SOLAR,
            kind=Meter.Kind.MQTT,
            config={"topic": publisher.topic("pv"), "paths": {"power_w_total": "P"}},
        )
        wait_until(
            lambda: publisher.publish("pv", {"P": -900}) or count(mqtt), every=0.5, timeout=30
        )
        server.stop()
        wait_until(lambda: "Modbus 127.0.0.1" in process.output(), timeout=30)
    finally:
        process.stop()
        server.close()
        publisher.close()
    output = process.output()
    assert process.proc.returncode == 0, output
    assert f"meter {modbus.pk} (ABB): reading" in output
    assert f"meter {mqtt.pk} (PV): mqtt meter configured" in output
    # One line per state change, not per retry (the link cut, then the refused reconnections).
    assert 1 <= output.count(f"meter {modbus.pk} (ABB): Modbus 127.0.0.1:{server.port}") <= 2
    assert "run_meters: stopped" in output
    assert "connection lost" not in output  # a clean stop is not an outage
