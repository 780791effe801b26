"""How the worker decodes JSON messages (`sparklin.celery.json_loads`): the values kombu's own
decoder gives, for every body — with orjson when no value can be one of kombu's tagged types,
through kombu's decoder otherwise."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from kombu.serialization import dumps, loads
from kombu.utils import json as kombu_json

from sparklin.celery import json_loads

EVENTS = [
    {
        "identity": "CP-1",
        "kind": "meter_values",
        "received_at": "2026-03-02T08:00:00+00:00",
        "payload": {
            "transaction_id": "T1",
            "evse_id": 1,
            "samples": [{"measurand": "Énergie", "value": "1.5", "unit": "kWh", "x": 1.25}],
        },
    }
]

BODIES = [
    # A gateway's message (orjson, non-ASCII as is), and the same through kombu's encoder.
    ([[EVENTS], {}, {"callbacks": None}], "orjson"),
    ([[EVENTS], {}, {"callbacks": None}], "kombu"),
    # Values kombu tags: revived by kombu's hook, whichever path decodes them.
    (
        [
            [datetime(2026, 3, 2, 8, 0, tzinfo=UTC), Decimal("1.50"), uuid.UUID(int=7)],
            {},
            {},
        ],
        "kombu",
    ),
    # What orjson refuses: an integer beyond 64 bits (read as a float, the json module exact);
    # the first one beyond, and 19 digits that still fit (either path gives the same).
    ([[{"value": 10**30}], {}, {}], "kombu"),
    ([[{"value": 2**64 + 1, "text": "#" * 20}], {}, {}], "kombu"),
    ([[{"value": 10**18, "neighbour": -(2**63)}], {}, {}], "orjson"),
]


def _encode(body, how):
    if how == "orjson":
        import orjson

        return orjson.dumps(body)
    return kombu_json.dumps(body).encode()


@pytest.mark.parametrize(("body", "how"), BODIES)
def test_json_loads_gives_what_kombu_s_decoder_gives(body, how):
    raw = _encode(body, how)
    expected = kombu_json.loads(raw)
    for data in (raw, raw.decode(), memoryview(raw)):
        assert json_loads(data) == expected


def test_a_tag_spelled_with_escapes_is_still_revived():
    raw = b'{"\\u005f_type__": "decimal", "__value__": "2.5"}'
    assert json_loads(raw) == kombu_json.loads(raw) == Decimal("2.5")


def test_not_json_is_a_decode_error_as_before():
    from kombu.exceptions import DecodeError

    with pytest.raises(DecodeError):
        loads(b"{not json", "application/json", "utf-8")


def test_the_worker_decodes_json_messages_with_it():
    content_type, encoding, raw = dumps(EVENTS, serializer="json")
    assert content_type == "application/json"
    from kombu.serialization import registry

    assert registry._decoders["application/json"] is json_loads
    assert loads(raw, content_type, encoding) == EVENTS
