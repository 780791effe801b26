"""OCPP main meters: connector 0 / EVSE 0 MeterValues, through the worker's event handler,
become readings of the meter configured for that charger."""

from datetime import UTC, datetime, timedelta

import pytest

from chargers.events import main_meter
from chargers.tasks import process_events
from meters.models import Meter, MeterReading
from ocpp_gateway.v16 import samples_16
from ocpp_gateway.v201 import samples_201

from ..builders import make_charger, make_community, make_meter, make_site

T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


def sv16(value, measurand, phase=None, location="Inlet", unit="W"):
    v = {"value": str(value), "measurand": measurand, "unit": unit, "location": location}
    if phase:
        v["phase"] = phase
    return v


def meter_values(charger, samples, connector=0, minutes=0):
    stamp = (T0 + timedelta(minutes=minutes)).isoformat()
    return {
        "identity": charger.identity,
        "kind": "meter_values",
        "payload": {
            "transaction_id": None,
            "evse_id": connector,
            "connector_id": connector,
            "samples": samples,
        },
        "received_at": stamp,
    }


def readings(meter):
    rows = MeterReading.objects.with_scopes_disabled().filter(meter_id=meter.pk)
    return list(rows.order_by("at"))


@pytest.fixture
def charger(site):
    return make_charger(site.community, site=site, identity="MAIN-METER-01")


@pytest.fixture
def grid(site, charger):
    return make_meter(
        site,
        kind=Meter.Kind.OCPP,
        config={"charger": charger.identity, "evse": 0, "location": "Inlet"},
    )


def test_a_16_connector_0_meter_becomes_a_reading(charger, grid):
    stamp = T0.isoformat()
    samples = samples_16(
        [
            {
                "timestamp": stamp,
                "sampledValue": [
                    sv16(5000, "Power.Active.Import", "L1-N"),
                    sv16(3.2, "Power.Active.Import", "L2-N", unit="kW"),
                    sv16(800, "Power.Active.Export", "L3-N"),
                    sv16(21.7, "Current.Import", "L1", unit="A"),
                    sv16(1234.5, "Energy.Active.Import.Register", unit="kWh"),
                    sv16(231, "Voltage", "L1-N", unit="V"),
                ],
            }
        ]
    )
    process_events.delay([meter_values(charger, samples)]).get()
    [reading] = readings(grid)
    assert reading.at == T0
    assert (reading.power_w_l1, reading.power_w_l2, reading.power_w_l3) == (5000, 3200, -800)
    assert reading.power_w_total == 7400 and reading.current_a_l1 == 21.7
    assert reading.energy_import_wh == 1_234_500 and reading.energy_export_wh is None


def test_a_201_evse_0_meter_with_a_multiplier_and_a_total(charger, grid):
    samples = samples_201(
        [
            {
                "timestamp": T0.isoformat(),
                "sampledValue": [
                    {
                        "value": 4.5,
                        "measurand": "Power.Active.Import",
                        "location": "Inlet",
                        "unitOfMeasure": {"unit": "W", "multiplier": 3},
                    },
                ],
            }
        ]
    )
    process_events.delay([meter_values(charger, samples)]).get()
    [reading] = readings(grid)
    assert reading.power_w_total == 4500 and reading.power_w_l1 is None


def test_only_the_configured_location_and_connector_0_count(charger, grid, site):
    outlet = make_meter(
        site,
        name="Outlet side",
        role=Meter.Role.BUILDING,
        kind=Meter.Kind.OCPP,
        config={"charger": charger.identity, "location": ""},
    )
    samples = [
        {
            "timestamp": T0.isoformat(),
            "measurand": "Power.Active.Import",
            "phase": "",
            "context": "Sample.Clock",
            "value": "7000",
            "unit": "W",
        },  # no location: Outlet
    ]
    process_events.delay(
        [meter_values(charger, samples), meter_values(charger, samples, connector=1, minutes=1)]
    ).get()
    assert readings(grid) == []  # Inlet only
    assert [r.power_w_total for r in readings(outlet)] == [7000]  # connector 1 is an outlet


def test_a_replayed_batch_adds_nothing_and_another_community_reads_nothing(charger, grid):
    other = make_site(make_community())
    stranger = make_meter(
        other, kind=Meter.Kind.OCPP, config={"charger": charger.identity, "location": ""}
    )
    batch = [
        meter_values(
            charger,
            [
                sv16(100, "Power.Active.Import")
                | {"timestamp": T0.isoformat(), "phase": "", "context": "Sample.Clock"}
            ],
        )
    ]
    process_events.delay(batch).get()
    process_events.delay(batch).get()
    assert len(readings(grid)) == 1
    assert readings(stranger) == []


def test_a_failing_consumer_does_not_lose_the_batch(charger, grid, caplog):
    def broken(collected):
        raise ValueError("bug")

    main_meter.register_consumer(broken)
    try:
        sample = sv16(100, "Power.Active.Import") | {"timestamp": T0.isoformat(), "phase": ""}
        counts = process_events.delay([meter_values(charger, [sample])]).get()
    finally:
        main_meter._consumers.remove(broken)
    assert counts["quarantined"] == 0
    assert len(readings(grid)) == 1  # the other consumer (meters) still recorded it
    assert "Main-meter consumer broken failed" in caplog.text
