"""Frames in and out of the gateway are JSON read and written by orjson, with the json module as
the fallback for what orjson refuses: the gateway reads what it read before, and writes frames
any JSON reader reads back to the same values."""

import json
import math

import pytest

from ocpp_gateway import validation
from ocpp_gateway.base import decode, encode
from ocpp_gateway.ocpplib import OCPPError


def test_frames_decode_to_what_the_json_module_reads():
    raw = json.dumps(
        [2, "m-1", "MeterValues", {"connectorId": 1, "meterValue": [{"sampledValue": []}]}]
    )
    assert decode(raw) == json.loads(raw)
    odd = '[2,"m-2","DataTransfer",{"vendorId":"é\\ud800","data":"x","n":NaN,"i":-Infinity}]'
    frame = decode(odd)  # orjson refuses these; the json module reads them, as before
    assert frame[3]["vendorId"] == "é\ud800"
    assert math.isnan(frame[3]["n"]) and frame[3]["i"] == -math.inf
    for broken in ("[2, 'm-3']", "[2,", ""):
        with pytest.raises(ValueError):
            decode(broken)


def test_an_integer_beyond_64_bits_is_refused_by_the_schema():
    frame = decode('[2,"m-1","MeterValues",{"connectorId":100000000000000000000000000000,'
                   '"meterValue":[{"timestamp":"t","sampledValue":[{"value":"1"}]}]}]')  # fmt: skip
    with pytest.raises(OCPPError) as error:
        validation.validate("1.6", "MeterValues", frame[3])
    assert error.value.code == "TypeConstraintViolation"


def test_frames_sent_read_back_to_the_same_values():
    frame = [3, "m-1", {"currentTime": "2026-01-01T00:00:00.000Z", "text": "Prêt ✓", "n": 1.5}]
    text = encode(frame)
    assert text == '[3,"m-1",{"currentTime":"2026-01-01T00:00:00.000Z","text":"Prêt ✓","n":1.5}]'
    assert json.loads(text) == frame
    assert json.loads(encode([2, "m-2", "DataTransfer", {"n": 10**30}])) == [
        2,
        "m-2",
        "DataTransfer",
        {"n": 10**30},
    ]
