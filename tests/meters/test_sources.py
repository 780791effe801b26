"""Decoding what meters send: the dotted JSON paths, MQTT payloads as home-energy systems
publish them, Modbus register maps (data, not code) and the per-kind configuration rules."""

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from meters import paths
from meters.config import (
    ModbusConfig,
    MqttConfig,
    OcppConfig,
    parse_broker,
    parse_config,
    register_maps,
)
from meters.sources import modbus, retry_delay
from meters.sources.mqtt import PayloadError, decode

AT = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _english():
    """The messages asserted below are the English ones (the portal defaults to French)."""
    with translation.override("en"):
        yield


@pytest.mark.parametrize(
    "payload, path, value",
    [
        ({"l1": 1200}, "l1", 1200.0),
        ({"ENERGY": {"Power": [120, 340, 560]}}, "ENERGY.Power.2", 560.0),
        ({"emeters": [{"power": 1.5}, {"power": "-2.5"}]}, "emeters[1].power", -2.5),
        ({"em:0": {"a_act_power": 812.4}}, "em:0.a_act_power", 812.4),
        (1234.5, "$", 1234.5),
        ({"a": {"b": 3}}, "$.a.b", 3.0),
    ],
)
def test_a_path_picks_its_number(payload, path, value):
    assert paths.pick(payload, paths.parse(path)) == value


@pytest.mark.parametrize(
    "payload, path, error",
    [
        ({"l1": 1}, "l2", "no key l2"),
        ({"P": [1, 2]}, "P.5", "no index P.5"),
        ({"P": 1}, "P.x", "P is not an object or list"),
        ({"P": True}, "P", "not a number"),
        ({"P": "on"}, "P", "not a number"),
        ({"P": None}, "P", "not a number"),
    ],
)
def test_a_path_that_leads_nowhere_says_where_it_stopped(payload, path, error):
    with pytest.raises(paths.PathError, match=error):
        paths.pick(payload, paths.parse(path))


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", "$.", ".".join("x" * 17)])
def test_malformed_paths_are_refused(path):
    with pytest.raises(ValueError):
        paths.parse(path)


def mqtt(**overrides):
    data = {"topic": "home/meter", "paths": {"power_w_l1": "l1"}, **overrides}
    return MqttConfig.from_json(data)


def test_a_tasmota_payload_in_kw_with_export_counted_positive():
    config = mqtt(
        paths={
            "power_w_l1": "ENERGY.Power.0",
            "power_w_l2": "ENERGY.Power.1",
            "power_w_l3": "ENERGY.Power.2",
            "current_a_l1": "ENERGY.Current.0",
        },
        scale=1000,
        invert=True,
    )
    payload = (
        b'{"Time":"2026-06-15T14:00:00","ENERGY":{"Power":[1.2,0.9,-0.3],"Current":[5.1,4,1]}}'
    )
    reading = decode(config, 7, payload, AT)
    assert (reading.power_w_l1, reading.power_w_l2, reading.power_w_l3) == (-1200, -900, 300)
    assert reading.current_a_l1 == 5.1  # currents are not scaled nor inverted
    assert reading.meter_id == 7 and reading.at == AT and reading.power_w_total is None


def test_a_home_assistant_state_topic_carries_the_bare_number():
    reading = decode(mqtt(paths={"power_w_total": "$"}), 1, b"-2345.6", AT)
    assert reading.power_w_total == -2345.6


@pytest.mark.parametrize(
    "payload, error",
    [(b"not json", "not JSON"), (b'{"l2": 1}', "power_w_l1: no key l1"), (b"x" * 70_000, "bytes")],
)
def test_an_unexpected_payload_is_an_error_not_a_reading(payload, error):
    with pytest.raises(PayloadError, match=error):
        decode(mqtt(), 1, payload, AT)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"topic": "", "paths": {"power_w_l1": "a"}}, "topic"),
        ({"topic": "home/+/power", "paths": {"power_w_l1": "a"}}, "wildcards"),
        ({"topic": "t", "paths": {}}, "at least one phase"),
        ({"topic": "t", "paths": {"current_a_l1": "a"}}, "at least one phase"),
        ({"topic": "t", "paths": {"power_w_l1": "a..b"}}, "not a JSON path"),
        ({"topic": "t", "paths": {"power_w_l1": "a"}, "scale": 0}, "scale"),
        ({"topic": "t", "paths": {"power_w_l1": "a"}, "broker": "http://x"}, "mqtt://"),
    ],
)
def test_mqtt_configurations_are_checked(data, message):
    with pytest.raises(ValidationError, match=message):
        parse_config("mqtt", data)


def test_a_broker_address_with_an_account_and_tls():
    broker = parse_broker("mqtts://meter%40site:s3cr%3At@broker.example:8884")
    assert (broker.host, broker.port, broker.tls) == ("broker.example", 8884, True)
    assert (broker.username, broker.password) == ("meter@site", "s3cr:t")
    assert parse_broker("mqtt://10.0.0.2").port == 1883


@pytest.mark.parametrize(
    "data, message",
    [
        ({"host": "", "model": "sdm630"}, "host"),
        ({"host": "10.0.0.5", "model": "nope"}, "Unknown meter model"),
        ({"host": "10.0.0.5", "model": "sdm630", "port": 70000}, "port"),
        ({"host": "10.0.0.5", "model": "sdm630", "unit": 300}, "unit"),
        ({"host": "10.0.0.5", "model": "sdm630", "interval": 0}, "interval"),
        ({"host": "10.0.0.5", "model": "sdm630", "interval": 2.5}, "interval"),
    ],
)
def test_modbus_configurations_are_checked(data, message):
    with pytest.raises(ValidationError, match=message):
        parse_config("modbus", data)


def test_a_modbus_configuration_round_trips_with_its_defaults():
    config = ModbusConfig.from_json({"host": "10.0.0.5", "model": "em24"})
    assert (config.port, config.unit, config.interval) == (502, 1, 5)
    assert ModbusConfig.from_json(config.to_json()) == config


def test_an_ocpp_main_meter_names_its_charger_and_location():
    assert OcppConfig.from_json({"charger": "CP-1", "location": "Inlet"}).location == "Inlet"
    with pytest.raises(ValidationError, match="location"):
        OcppConfig.from_json({"charger": "CP-1", "location": "Body"})
    with pytest.raises(ValidationError, match="charger"):
        OcppConfig.from_json({})


def test_each_register_map_names_its_source_and_every_figure_it_reads():
    maps = register_maps()
    assert set(maps) == {"sdm630", "abb_b23", "em24"}
    for regmap in maps.values():
        assert len(regmap.source) > 40
        fields = {r.field for r in regmap.registers}
        assert {"power_w_l1", "power_w_l2", "power_w_l3", "power_w_total"} <= fields


@pytest.mark.parametrize("model", ["sdm630", "abb_b23", "em24"])
@pytest.mark.parametrize("value", [0.0, 1234.5, -2345.6, 98765.4])
def test_register_values_survive_encoding_in_each_model(model, value):
    for reg in register_maps()[model].registers:
        if reg.type.startswith("u") and value < 0:
            continue
        decoded = modbus.decode_register(reg, modbus.encode_register(reg, value))
        assert decoded == pytest.approx(value, abs=max(reg.scale, 0.01), rel=1e-6)


def test_adjacent_registers_are_read_in_one_request():
    sdm = modbus.blocks(register_maps()["sdm630"].registers)
    assert [(b.function, b.address, b.count) for b in sdm] == [
        ("input", 6, 12),  # currents and phase powers
        ("input", 52, 2),  # total power
        ("input", 72, 4),  # import and export energy
    ]


def test_retry_delays_grow_to_a_bound_with_jitter():
    delays = [retry_delay(n) for n in range(1, 12)]
    assert all(0.5 <= d <= 60 for d in delays)
    assert max(delays[-3:]) > 16 and delays[0] <= 1
    assert len({round(retry_delay(8), 6) for _ in range(5)}) > 1
