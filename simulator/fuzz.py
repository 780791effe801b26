"""Hostile frames for a gateway: every class of malformed OCPP-J frame (broken JSON, wrong
shapes, unknown types and actions, overlong ids, binary frames, 600- and 1,500-deep nesting,
unsolicited answers, schema violations) and schema-valid poison values (absurd meter registers,
impossible times). Used by the fuzz test (`tests/e2e/test_gateway_fuzz.py`) and the benchmark
(`python -m bench.fuzz`); a tool like the rest of the simulator, never part of the gateway."""

from __future__ import annotations

import asyncio
import json
import random

FRAMES_PER_CONNECTION = 5_000
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


async def fuzz(
    url: str, identity: str, version: str, seed: int, count: int = FRAMES_PER_CONNECTION
) -> dict:
    """Send the frames while reading what comes back; returns counts. Every CALL the gateway
    sends us (configuration at boot) is left unanswered: it times out on its side."""
    from websockets.asyncio.client import connect

    frames = fuzz_frames(version, random.Random(seed), count)
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
