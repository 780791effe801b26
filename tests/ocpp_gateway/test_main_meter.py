"""A charger that is a site's OCPP meter is asked, through the boot configuration path, for
connector-0 (1.6) / EVSE-0 (2.0.1) clock-aligned main-meter data; what it then sends becomes
the meter's readings. Loopback: a real gateway in-process and the simulator."""

import asyncio

import pytest
from django.utils import timezone
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from chargers.models import Charger, ChargerCommand
from meters.models import Meter, MeterReading
from meters.services import create_meter, delete_meter
from ocpp_gateway.profiles import MAIN_METER_MEASURANDS, MAIN_METER_MEASURANDS_IMPORT
from simulator.fleet import connect_charger, now_iso

from .. import builders
from .test_gateway import configured_and_recorded, run, until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.GATEWAY_HEARTBEAT_INTERVAL = 120
    settings.GATEWAY_METER_SAMPLE_INTERVAL = 30
    settings.GATEWAY_MAIN_METER_INTERVAL = 5


@pytest.fixture
def main_meter(site, charger):
    return builders.make_meter(
        site, kind=Meter.Kind.OCPP, config={"charger": charger.identity, "location": ""}
    )


def sample16(value, measurand, phase=None, unit="W"):
    v = {"value": str(value), "measurand": measurand, "unit": unit, "location": "Inlet"}
    if phase:
        v["phase"] = phase
    return v


def test_a_16_main_meter_charger_is_asked_for_connector_0_aligned_data(charger, main_meter):
    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "1.6") as cp:
            await cp.boot()
            await until(lambda: cp.count("ChangeConfiguration") == 6)
            await configured_and_recorded(gw, charger.identity)
            # What the charger then sends every 5 s on connector 0: the building's load.
            await cp.call(
                call16.MeterValues(
                    connector_id=0,
                    meter_value=[
                        {
                            "timestamp": now_iso(),
                            "sampled_value": [
                                sample16(4600, "Power.Active.Import", "L1"),
                                sample16(2300, "Power.Active.Import", "L2"),
                                sample16(0, "Power.Active.Import", "L3"),
                                sample16(20, "Current.Import", "L1", unit="A"),
                                sample16(10, "Current.Import", "L2", unit="A"),
                                sample16(0, "Current.Import", "L3", unit="A"),
                            ],
                        }
                    ],
                )
            )
            await gw.batcher.sync()
            return dict(cp.configuration)

    configuration = run(scenario)
    assert configuration["ClockAlignedDataInterval"] == "5"
    assert configuration["MeterValuesAlignedData"] == MAIN_METER_MEASURANDS
    # The session settings are untouched: power management still gets each car's current.
    assert "Current.Import" in configuration["MeterValuesSampledData"]
    stored = Charger.objects.get(pk=charger.pk).configuration
    assert stored["MeterValuesAlignedData"] == MAIN_METER_MEASURANDS
    reading = MeterReading.objects.get(meter=main_meter)
    assert (reading.power_w_l1, reading.power_w_l2, reading.power_w_l3) == (4600, 2300, 0)
    assert (reading.current_a_l1, reading.current_a_l2) == (20, 10)


def test_a_201_main_meter_station_is_asked_for_evse_0_aligned_data(charger, main_meter):
    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "2.0.1") as cp:
            await cp.boot()
            await until(lambda: cp.count("SetVariables") == 1)
            await cp.wait_owned()
            await configured_and_recorded(gw, charger.identity)
            await cp.call(
                call201.MeterValues(
                    evse_id=0,
                    meter_value=[
                        {
                            "timestamp": now_iso(),
                            "sampled_value": [
                                {
                                    "value": 6.9,
                                    "measurand": "Power.Active.Import",
                                    "phase": "L1-N",
                                    "unit_of_measure": {"unit": "W", "multiplier": 3},
                                }
                            ]
                            + [
                                {"value": v, "measurand": "Power.Active.Import", "phase": p}
                                for p, v in (("L2-N", 2300.0), ("L3-N", 1150.0))
                            ],
                        }
                    ],
                )
            )
            await gw.batcher.sync()
            return dict(cp.configuration)

    configuration = run(scenario)
    assert configuration["AlignedDataCtrlr/Enabled"] == "true"
    assert configuration["AlignedDataCtrlr/Interval"] == "5"
    assert configuration["AlignedDataCtrlr/Measurands"] == MAIN_METER_MEASURANDS
    assert configuration["AlignedDataCtrlr/SendDuringIdle"] == "false"
    assert "Current.Import" in configuration["SampledDataCtrlr/TxUpdatedMeasurands"]
    reading = MeterReading.objects.get(meter=main_meter)
    # The multiplier is applied: 6.9 × 10³ W.
    assert (reading.power_w_l1, reading.power_w_l2, reading.power_w_l3) == (6900, 2300, 1150)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_factory_reset_main_meter_gets_its_aligned_data_back_at_the_next_boot(
    charger, main_meter, version
):
    """Configured before, same firmware: the check at every boot reads the main meter's
    settings too and sets them again when the charger lost them."""
    Charger.objects.filter(pk=charger.pk).update(
        ocpp_version=version, configured_at=timezone.now(), firmware_version="1.0.0"
    )

    # Its factory settings: a 2.0.1 station's variables exist (unknown ones are left alone).
    factory = (
        {}
        if version == "1.6"
        else {
            "AlignedDataCtrlr/Enabled": "false",
            "AlignedDataCtrlr/Interval": "900",
            "AlignedDataCtrlr/Measurands": "Energy.Active.Import.Register",
            "AlignedDataCtrlr/SendDuringIdle": "true",
        }
    )

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, version, configuration=factory) as cp:
            await cp.boot(firmware="1.0.0")
            setter = "ChangeConfiguration" if version == "1.6" else "SetVariables"
            await until(lambda: cp.count(setter) >= 1)
            await configured_and_recorded(gw, charger.identity)
            return dict(cp.configuration), [a for a, _ in cp.received]

    configuration, actions = run(scenario)
    if version == "1.6":
        assert actions.count("GetConfiguration") == 1  # the profile's keys only, no full read
        assert configuration["ClockAlignedDataInterval"] == "5"
        assert configuration["MeterValuesAlignedData"] == MAIN_METER_MEASURANDS
    else:
        assert actions == ["GetVariables", "SetVariables"]
        assert configuration["AlignedDataCtrlr/Interval"] == "5"
        assert configuration["AlignedDataCtrlr/Measurands"] == MAIN_METER_MEASURANDS


def test_a_charger_that_is_no_meter_gets_no_aligned_data(charger):
    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "1.6") as cp:
            await cp.boot()
            await until(lambda: cp.count("ChangeConfiguration") == 4)
            await configured_and_recorded(gw, charger.identity)
            return dict(cp.configuration)

    configuration = run(scenario)
    assert "MeterValuesAlignedData" not in configuration
    assert "ClockAlignedDataInterval" not in configuration


def test_a_meter_that_cannot_measure_export_is_asked_for_import_only(charger, main_meter):
    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "1.6") as cp:
            cp.refuse_setting = lambda key, value: (
                key == "MeterValuesAlignedData" and "Export" in value
            )
            await cp.boot()
            await until(lambda: cp.count("ChangeConfiguration") == 7)
            await configured_and_recorded(gw, charger.identity)
            return dict(cp.configuration)

    configuration = run(scenario)
    assert configuration["MeterValuesAlignedData"] == MAIN_METER_MEASURANDS_IMPORT
    stored = Charger.objects.get(pk=charger.pk).configuration
    assert stored["MeterValuesAlignedData"] == MAIN_METER_MEASURANDS_IMPORT


def test_a_meter_made_to_read_a_connected_charger_reconfigures_it_now(
    community, site, charger, manager
):
    """The portal adds an OCPP meter on a connected charger: a Reconfigure is queued (audited
    as the person's), and the gateway reads the charger's row again before configuring, so the
    aligned data is asked at once, not at the next reboot."""
    Charger.objects.filter(pk=charger.pk).update(connected=True, ocpp_version="1.6")

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "1.6") as cp:
            await cp.boot()
            await until(lambda: cp.count("ChangeConfiguration") == 4)
            await configured_and_recorded(gw, charger.identity)
            assert "MeterValuesAlignedData" not in cp.configuration
            await asyncio.to_thread(
                create_meter,
                site=site,
                actor=manager,
                name="Main meter",
                kind=Meter.Kind.OCPP,
                role=Meter.Role.GRID,
                config={"charger": charger.identity},
            )
            await until(lambda: "MeterValuesAlignedData" in cp.configuration, timeout=8)
            await gw.batcher.sync()
            return dict(cp.configuration)

    configuration = run(scenario)
    assert configuration["MeterValuesAlignedData"] == MAIN_METER_MEASURANDS
    command = ChargerCommand.objects.get(charger=charger, action="Reconfigure")
    assert command.asked_by == manager
    assert command.status == "accepted"


def test_removing_the_meter_moves_the_charger_so_the_directory_sees_it(site, charger, manager):
    meter = create_meter(
        site=site,
        actor=manager,
        name="Main meter",
        kind=Meter.Kind.OCPP,
        role=Meter.Role.GRID,
        config={"charger": charger.identity},
    )
    # Not connected: nothing queued, the next boot configures it.
    assert not ChargerCommand.objects.filter(charger=charger).exists()
    from ocpp_gateway.decisions import load_charger, load_directory

    assert load_charger(charger.identity)["main_meter"] is True
    before = Charger.objects.get(pk=charger.pk).updated_at
    delete_meter(meter=meter, actor=manager)
    assert Charger.objects.get(pk=charger.pk).updated_at > before
    rows, _ = load_directory(before)
    assert [(r["identity"], r["main_meter"]) for r in rows] == [(charger.identity, False)]
