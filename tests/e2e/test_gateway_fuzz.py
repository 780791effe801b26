"""Fuzzing the production shape (issue 13): a gateway process and a real Celery worker process,
4 connections sending ~20,000 frames of every class — broken JSON, wrong shapes, unknown types
and actions, overlong ids, binary frames, 600- and 1,500-deep nesting, unsolicited answers,
schema violations and schema-valid poison values — while honest chargers run whole sessions.
It ends with every honest session recorded, every fuzz connection still open and answered, and
the worker and the gateway alive.

The gateway answers or ignores every frame as OCPP-J says and sends the worker nothing but text;
the worker quarantines the poison values and decodes frames with bounds."""

import asyncio
import json
import random
from decimal import Decimal
from pathlib import Path

import pytest

from chargers.models import ChargingSession
from communities.models import Role
from simulator.fleet import run_session
from tests import builders

from .processes import wait_until

pytestmark = pytest.mark.e2e

CARD = "FUZZ-CARD-01"
FRAMES_PER_CONNECTION = 5_000
HONEST = [("FZ-H16-1", "1.6"), ("FZ-H16-2", "1.6"), ("FZ-H201-1", "2.0.1"), ("FZ-H201-2", "2.0.1")]
FUZZERS = [("FZ-F16-1", "1.6"), ("FZ-F16-2", "1.6"), ("FZ-F201-1", "2.0.1"), ("FZ-F201-2", "2.0.1")]
BIG = 10**15


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def fuzz_frames(version: str, rng: random.Random, count: int) -> list:
    """`count` frames of every class, in random order; bytes are sent as binary frames."""
    n = iter(range(10**9))

    def uid():
        return f"fz{next(n)}"

    ts = "2025-03-10T08:00:00Z"
    if version == "1.6":
        poison = [
            [
                "StartTransaction",
                {"connectorId": 1, "idTag": "ÿ" * 20, "meterStart": BIG, "timestamp": ts},
            ],
            [
                "StartTransaction",
                {
                    "connectorId": 2**31 - 1,
                    "idTag": "P",
                    "meterStart": -BIG,
                    "timestamp": "0001-01-01T00:00:00Z",
                },
            ],
            [
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": 2**31 - 1,
                    "meterValue": [
                        {
                            "timestamp": "9999-12-31T23:59:59Z",
                            "sampledValue": [
                                {"value": "1e400"},
                                {"value": "NaN"},
                                {"value": "-" + "9" * 60},
                            ],
                        }
                    ],
                },
            ],
            [
                "StopTransaction",
                {"transactionId": -(2**31), "meterStop": BIG, "timestamp": "not a date"},
            ],
            [
                "StatusNotification",
                {
                    "connectorId": 2**31 - 1,
                    "errorCode": "OtherError",
                    "status": "Faulted",
                    "info": "\u0000" * 50,
                },
            ],
            [
                "BootNotification",
                {
                    "chargePointVendor": "\u202e" * 20,
                    "chargePointModel": "x" * 20,
                    "firmwareVersion": "\ud7ff" * 50,
                },
            ],
        ]
        invalid = [
            [
                "StatusNotification",
                {"connectorId": "one", "errorCode": "NoError", "status": "Available"},
            ],
            ["Heartbeat", {"surprise": [1, 2, 3]}],
            ["MeterValues", {"connectorId": 1}],
        ]
    else:
        poison = [
            [
                "TransactionEvent",
                {
                    "eventType": "Started",
                    "timestamp": ts,
                    "triggerReason": "Authorized",
                    "seqNo": BIG,
                    "transactionInfo": {"transactionId": "ÿ" * 36},
                    "evse": {"id": 2**31 - 1, "connectorId": 2**31 - 1},
                    "meterValue": [
                        {
                            "timestamp": ts,
                            "sampledValue": [{"value": 1e300, "unitOfMeasure": {"multiplier": 9}}],
                        }
                    ],
                },
            ],
            [
                "TransactionEvent",
                {
                    "eventType": "Ended",
                    "timestamp": "9999-12-31T23:59:59Z",
                    "triggerReason": "StopAuthorized",
                    "seqNo": -1,
                    "transactionInfo": {"transactionId": "never-started"},
                    "idToken": {"idToken": "Z" * 36, "type": "ISO14443"},
                },
            ],
            [
                "MeterValues",
                {
                    "evseId": 2**31 - 1,
                    "meterValue": [
                        {"timestamp": "0001-01-01T00:00:00Z", "sampledValue": [{"value": -1e308}]}
                    ],
                },
            ],
            [
                "StatusNotification",
                {
                    "timestamp": "garbage",
                    "connectorStatus": "Faulted",
                    "evseId": 2**31 - 1,
                    "connectorId": 0,
                },
            ],
            [
                "NotifyReport",
                {
                    "requestId": 1,
                    "generatedAt": ts,
                    "seqNo": 0,
                    "reportData": [
                        {
                            "component": {"name": "C" * 50},
                            "variable": {"name": "V" * 50},
                            "variableAttribute": [{"value": "x" * 2500}],
                        }
                    ],
                },
            ],
        ]
        invalid = [
            [
                "StatusNotification",
                {"timestamp": ts, "connectorStatus": "Sleeping", "evseId": 1, "connectorId": 1},
            ],
            ["Heartbeat", {"surprise": 1}],
            ["TransactionEvent", {"eventType": "Updated"}],
        ]
    makers = [
        lambda: '[2, "' + uid() + '", "Heartbeat", {',  # truncated
        lambda: "not json " + uid(),
        lambda: json.dumps({"hello": uid()}),
        lambda: json.dumps([2, uid()]),
        lambda: json.dumps([7, uid(), {}]),
        lambda: json.dumps([2, "i" * 37 + uid(), "Heartbeat", {}]),
        lambda: f'[2,"{uid()}","Heartbeat",{{"x":{nested(600)}}}]',
        lambda: f'[2,"{uid()}","Heartbeat",{{"x":{nested(1500)}}}]',
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))),
        lambda: json.dumps([3, uid(), {"status": "Accepted"}]),
        lambda: json.dumps([4, uid(), "InternalError", "", {}]),
        lambda: json.dumps([2, uid(), "Teleport", {}]),
        lambda: json.dumps([2, uid(), "Reset", {"type": "Hard"}]),
        lambda: json.dumps([2, uid(), "Heartbeat", {}]),
        lambda: json.dumps([2, uid(), *rng.choice(invalid)]),
        lambda: json.dumps([2, uid(), *rng.choice(poison)]),
        lambda: json.dumps([2, uid(), *rng.choice(poison)]),
    ]
    return [rng.choice(makers)() for _ in range(count)]


async def fuzz(url: str, identity: str, version: str, seed: int) -> dict:
    """Send the frames while reading what comes back; returns counts. Every CALL the gateway
    sends us (configuration at boot) is left unanswered: it times out on its side."""
    from websockets.asyncio.client import connect

    frames = fuzz_frames(version, random.Random(seed), FRAMES_PER_CONNECTION)
    received = {"answers": 0, "errors": 0, "calls": 0}
    done = asyncio.Event()
    async with connect(url + identity, subprotocols=[f"ocpp{version}"], max_size=2**22) as ws:

        async def read():
            async for message in ws:
                frame = json.loads(message)
                received[{2: "calls", 3: "answers", 4: "errors"}[frame[0]]] += 1
                if frame[1] == "fz-last":
                    done.set()

        reader = asyncio.create_task(read())
        for frame in frames:
            await ws.send(frame)
        # An answer to this last frame proves every frame before it was handled.
        await ws.send(json.dumps([2, "fz-last", "Heartbeat", {}]))
        await asyncio.wait_for(done.wait(), 240)
        received["open"] = ws.state.name == "OPEN"
        reader.cancel()
    return received


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture
def fleet(e2e_env):
    community = builders.make_community(name="Fuzz", slug="fuzz")
    builders.make_price(community, price="0.2500", valid_from="2020-01-01")
    driver = builders.make_member(community, Role.INDIVIDUAL).user
    builders.make_card(community, holder=driver, uid=CARD)
    site = builders.make_site(community, name="Parking")
    return {
        identity: builders.make_charger(community, site=site, identity=identity)
        for identity, _ in HONEST + FUZZERS
    }


def test_fuzzed_frames_never_stop_the_gateway_or_the_worker(fleet, worker, gateway_process):
    pid = gateway_process.proc.pid
    rss_before = _rss_mb(pid)

    async def main():
        fuzzing = [
            fuzz(gateway_process.url, identity, version, seed)
            for seed, (identity, version) in enumerate(FUZZERS)
        ]
        honest = [
            run_session(
                gateway_process.url, identity, version, card=CARD, energy_wh=5000, timeout=240
            )
            for identity, version in HONEST
        ]
        return await asyncio.gather(*fuzzing, *honest)

    results = asyncio.run(asyncio.wait_for(main(), 300))
    fuzzed, sessions = results[: len(FUZZERS)], results[len(FUZZERS) :]
    rss_after = _rss_mb(pid)
    print(f"gateway RSS {rss_before:.0f} MB → {rss_after:.0f} MB; fuzz results {fuzzed}")
    assert all(r["open"] for r in fuzzed), fuzzed
    for (identity, _), result in zip(HONEST, sessions, strict=True):
        session = wait_until(
            lambda identity=identity, result=result: ChargingSession.objects.filter(
                charger=fleet[identity],
                transaction_id=result["transaction_id"],
                state=ChargingSession.State.COMPLETED,
            ).first(),
            timeout=120,
            what=f"{identity}'s session",
        )
        assert session.energy_wh == Decimal("5000")
    assert worker.proc.poll() is None, worker.output()
    assert gateway_process.proc.poll() is None, gateway_process.output()
    assert rss_after - rss_before < 100
