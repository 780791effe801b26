"""The gateway's own OCPP-J layer over a real websocket on loopback: frames of every class
(nesting, overlong ids, binary, unknown actions), unsolicited answers, durable before answered,
answers from what is known, and a retried start across connections and gateways."""

import asyncio
import json
import os
import threading
import time
import tracemalloc

import pytest

from chargers.models import ChargingSession, OcppMessage, TransactionStart
from ocpp_gateway import base
from ocpp_gateway.batcher import EventBatcher
from ocpp_gateway.decisions import Decisions
from ocpp_gateway.server import Gateway

from .test_gateway import TIMEOUT, exchange, raw_client, until

# Test bodies read tenant data in the community fixture's scope (tests/conftest.py).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.GATEWAY_HEARTBEAT_INTERVAL = 120
    settings.GATEWAY_METER_SAMPLE_INTERVAL = 30


def run(scenario, batcher=None, decisions=None, timeout=TIMEOUT * 4, **options):
    """Like test_gateway.run, with a batcher (a factory, built inside the loop) and decisions
    of the test's choosing."""

    async def main():
        gateway = Gateway(
            host="127.0.0.1",
            port=0,
            batcher=batcher() if batcher else EventBatcher(flush_seconds=0.05),
            decisions=decisions or Decisions(),
            **options,
        )
        async with gateway:
            return await scenario(gateway)

    return asyncio.run(asyncio.wait_for(main(), timeout))


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


START = {"connectorId": 1, "idTag": "X1", "meterStart": 10, "timestamp": "2025-03-10T08:00:00Z"}
METER_VALUES = {
    "connectorId": 1,
    "transactionId": 5,
    "meterValue": [
        {"timestamp": "2025-03-10T08:05:00Z", "sampledValue": [{"value": "1500", "unit": "Wh"}]}
    ],
}


# --- frames -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version,payload_error,frame_error",
    [
        ("1.6", "FormationViolation", "FormationViolation"),
        ("2.0.1", "FormatViolation", "RpcFrameworkError"),
    ],
)
def test_deep_nesting_long_ids_and_binary_frames(charger, version, payload_error, frame_error):
    """A CALL nested 600 or 1,500 deep is answered (its id is readable) without decoding it; an
    id over 36 characters is refused; a binary frame is ignored, logged and counted; the
    connection stays up throughout."""
    before = base.STATS["binary_frames"]

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity, protocols=[f"ocpp{version}"])
        answers = [
            await exchange(ws, f'[2,"deep-600","Heartbeat",{{"x":{nested(600)}}}]'),
            await exchange(ws, f'[2,"deep-1500","Heartbeat",{{"x":{nested(1500)}}}]'),
            await exchange(ws, f'[2,{json.dumps("i" * 37)},"Heartbeat",{{}}]'),
        ]
        await ws.send(b"\x00\x01binary")
        answers.append(await exchange(ws, [2, "i" * 36, "Heartbeat", {}]))  # 36 is fine
        await ws.close()
        return answers

    deep600, deep1500, long_id, ok = run(scenario)
    assert deep600[:3] == [4, "deep-600", payload_error]
    assert deep1500[:3] == [4, "deep-1500", payload_error]
    assert long_id[:3] == [4, "i" * 37, frame_error]
    assert ok[:2] == [3, "i" * 36]
    assert base.STATS["binary_frames"] == before + 1
    refused = OcppMessage.objects.filter(charger=charger, direction="in", message_type=0)
    assert refused.count() == 4  # 600, 1,500, long id, binary: logged as text only


def test_message_log_keeps_each_frame_once_as_bounded_text(charger):
    published: list[dict] = []

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity)
        big = {"vendorId": "V", "data": "x" * 20_000}
        await exchange(ws, [2, "dt-1", "DataTransfer", big])
        await ws.close()

    run(scenario, batcher=lambda: EventBatcher(publish=published.extend, flush_seconds=0.05))
    messages = [e["payload"] for e in published if e["kind"] == "message"]
    assert [(m["direction"], m["message_type"]) for m in messages] == [("in", 2), ("out", 3)]
    assert all(
        set(m) == {"direction", "message_type", "unique_id", "action", "frame"} for m in messages
    )
    assert isinstance(messages[0]["frame"], str) and len(messages[0]["frame"]) == 4000
    assert json.loads(messages[1]["frame"]) == [3, "dt-1", {"status": "UnknownVendorId"}]


# --- answers to our calls -----------------------------------------------------------------------


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_100000_unsolicited_answers_leave_memory_flat_and_calls_working(charger):
    """Answers to no pending call are dropped, logged and counted — not queued: once the message
    log has drained, the memory the flood allocated is released (traced by tracemalloc, which
    before the fix saw +258 MB retained), and the next real call gets its own answer."""
    answers = 100_000
    before = base.STATS["unsolicited_answers"]

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity)
        await exchange(ws, [2, "h0", "Heartbeat", {}])
        await until(lambda: gw.batcher.pending == 0)
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            for n in range(answers):
                await ws.send(f'[3,"nobody-{n}",{{"status":"Accepted","n":{n}}}]')
                if n % 10_000 == 9_999:
                    await exchange(ws, [2, f"h{n}", "Heartbeat", {}], timeout=60)  # all read
            await until(lambda: gw.batcher.pending == 0, timeout=60)
            await asyncio.sleep(0.2)
            retained = tracemalloc.get_traced_memory()[0] - baseline
        finally:
            tracemalloc.stop()
        cp = gw.connections[charger.identity]
        pending = cp._pending
        # A real call after the flood gets the charger's answer to it.
        call = asyncio.create_task(cp.call("GetConfiguration", {}))
        request = json.loads(await asyncio.wait_for(ws.recv(), 5))
        await ws.send(json.dumps([3, request[1], {"configurationKey": []}]))
        result = await asyncio.wait_for(call, 5)
        await ws.close()
        return retained, pending, result

    def discard(batch):
        pass

    retained, pending, result = run(
        scenario, batcher=lambda: EventBatcher(publish=discard, flush_seconds=0.05), timeout=300
    )
    assert base.STATS["unsolicited_answers"] - before == answers
    assert pending is None
    assert result == {"configurationKey": []}
    assert retained < 2 * 2**20, f"{retained / 2**20:.1f} MB retained"


def test_late_answer_after_timeout_is_dropped_not_given_to_the_next_call(charger):
    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity)
        await exchange(ws, [2, "h0", "Heartbeat", {}])
        cp = gw.connections[charger.identity]
        first = asyncio.create_task(cp.call("GetConfiguration", {}))
        late = json.loads(await ws.recv())
        with pytest.raises(TimeoutError):
            await first
        second = asyncio.create_task(cp.call("ChangeConfiguration", {"key": "K", "value": "1"}))
        request = json.loads(await ws.recv())
        await ws.send(json.dumps([3, late[1], {"configurationKey": []}]))  # too late
        await ws.send(json.dumps([3, request[1], {"status": "Accepted"}]))
        result = await asyncio.wait_for(second, 5)
        await ws.close()
        return result

    assert run(scenario, response_timeout=0.2) == {"status": "Accepted"}


# --- durable before answered ---------------------------------------------------------------------


class GatedPublish:
    """A publish the test controls: blocks until released, records when each batch went out."""

    def __init__(self):
        self.open = threading.Event()
        self.published: list[tuple[float, dict]] = []

    def __call__(self, batch):
        if not self.open.wait(5):
            raise ConnectionError("broker held down by the test")
        now = time.monotonic()
        self.published += [(now, event) for event in batch]


@pytest.mark.parametrize(
    "version,action,payload",
    [
        ("1.6", "MeterValues", METER_VALUES),
        ("1.6", "StartTransaction", START),
        (
            "1.6",
            "StopTransaction",
            {"transactionId": 5, "meterStop": 900, "timestamp": "2025-03-10T09:00:00Z"},
        ),
        (
            "2.0.1",
            "TransactionEvent",
            {
                "eventType": "Updated",
                "timestamp": "2025-03-10T08:05:00Z",
                "triggerReason": "MeterValuePeriodic",
                "seqNo": 1,
                "transactionInfo": {"transactionId": "T-1"},
                "evse": {"id": 1},
                "meterValue": [
                    {"timestamp": "2025-03-10T08:05:00Z", "sampledValue": [{"value": 1500}]}
                ],
            },
        ),
        (
            "2.0.1",
            "MeterValues",
            {
                "evseId": 1,
                "meterValue": [
                    {"timestamp": "2025-03-10T08:05:00Z", "sampledValue": [{"value": 1500}]}
                ],
            },
        ),
    ],
)
def test_an_answer_never_precedes_its_publish(charger, version, action, payload):
    gate = GatedPublish()

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity, protocols=[f"ocpp{version}"])
        # Status and heartbeat answer at once even while the broker holds.
        heartbeat = await exchange(ws, [2, "h1", "Heartbeat", {}], timeout=2)
        await ws.send(json.dumps([2, "d1", action, payload]))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.4)  # not durable yet: no answer
        gate.open.set()
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        answered_at = time.monotonic()
        await ws.close()
        return heartbeat, answer, answered_at

    heartbeat, answer, answered_at = run(
        scenario,
        batcher=lambda: EventBatcher(
            publish=gate, flush_seconds=0.05, durable_window=0.01, durable_timeout=5
        ),
    )
    assert heartbeat[:2] == [3, "h1"]
    assert answer[:2] == [3, "d1"]
    kinds = {"StartTransaction": "transaction", "StopTransaction": "transaction"}
    kind = kinds.get(action, "transaction" if action == "TransactionEvent" else "meter_values")
    published_at = [at for at, event in gate.published if event["kind"] == kind]
    assert published_at and published_at[0] <= answered_at


def test_not_durable_is_answered_internal_error_then_the_retry_is_recorded_once(charger):
    gate = GatedPublish()

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity)
        refused = await exchange(ws, [2, "s1", "StartTransaction", START], timeout=5)
        gate.open.set()
        retried = await exchange(ws, [2, "s2", "StartTransaction", START], timeout=5)
        await ws.close()
        return refused, retried

    refused, retried = run(
        scenario,
        batcher=lambda: EventBatcher(
            publish=gate, flush_seconds=0.05, durable_window=0.01, durable_timeout=0.3
        ),
    )
    assert refused[:3] == [4, "s1", "InternalError"]
    assert retried[:2] == [3, "s2"]
    starts = [e for _, e in gate.published if e["kind"] == "transaction"]
    # The first start was kept queued and published later: the same transaction id twice,
    # which the worker's idempotency absorbs.
    assert {e["payload"]["transaction_id"] for e in starts} == {str(retried[2]["transactionId"])}


# --- answer from what is known -------------------------------------------------------------------


class FlakyDecisions(Decisions):
    """Card decisions from a database that goes away once `down` is set."""

    down = False

    async def authorize(self, community_id, id_tag):
        if self.down:
            raise ConnectionError("database unreachable")
        return await super().authorize(community_id, id_tag)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_recorded_stop_is_never_answered_with_an_error(charger, version):
    decisions = FlakyDecisions()
    if version == "1.6":
        stop = [
            "StopTransaction",
            {
                "transactionId": 7,
                "idTag": "X1",
                "meterStop": 900,
                "timestamp": "2025-03-10T09:00:00Z",
            },
        ]
        answer_key = "idTagInfo"
    else:
        stop = [
            "TransactionEvent",
            {
                "eventType": "Ended",
                "timestamp": "2025-03-10T09:00:00Z",
                "triggerReason": "StopAuthorized",
                "seqNo": 2,
                "transactionInfo": {"transactionId": "T-7", "stoppedReason": "Local"},
                "idToken": {"idToken": "X1", "type": "ISO14443"},
                "evse": {"id": 1, "connectorId": 1},
            },
        ]
        answer_key = "idTokenInfo"

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity, protocols=[f"ocpp{version}"])
        decisions.down = True
        answer = await exchange(ws, [2, "stop-1", *stop])
        await ws.close()
        return answer

    answer = run(scenario, decisions=decisions)
    assert answer[:2] == [3, "stop-1"] and answer_key not in answer[2]
    assert OcppMessage.objects.filter(charger=charger, direction="out", message_type=3).exists()


# --- a retried start -----------------------------------------------------------------------------


def test_retried_start_on_a_new_connection_and_another_gateway_gets_one_id(charger):
    async def start_on(gw, unique_id):
        ws = await raw_client(gw.url, charger.identity)
        answer = await exchange(ws, [2, unique_id, "StartTransaction", START])
        await ws.close()
        return answer[2]["transactionId"]

    async def main():
        first = Gateway(host="127.0.0.1", port=0, batcher=EventBatcher(flush_seconds=0.05))
        second = Gateway(host="127.0.0.1", port=0, batcher=EventBatcher(flush_seconds=0.05))
        async with first, second:
            ids = [await start_on(first, "s1"), await start_on(first, "s2")]  # new connection
            ids.append(await start_on(second, "s3"))  # another gateway (its own LRU)
            other = dict(START, meterStart=11)
            ws = await raw_client(first.url, charger.identity)
            different = (await exchange(ws, [2, "s4", "StartTransaction", other]))[2]
            await ws.close()
        return ids, different["transactionId"]

    ids, different = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert len(set(ids)) == 1
    assert different != ids[0]
    assert ChargingSession.objects.filter(charger=charger).count() == 2
    assert ChargingSession.objects.filter(transaction_id=str(ids[0])).count() == 1
    assert TransactionStart.objects.count() == 2


def test_hanging_up_during_configuration_records_the_disconnection_cleanly(charger, caplog):
    published: list[dict] = []

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity)
        boot = {"chargePointVendor": "V", "chargePointModel": "M"}
        await exchange(ws, [2, "b1", "BootNotification", boot])
        asked = json.loads(await asyncio.wait_for(ws.recv(), 5))  # configuration has begun
        await ws.close()
        await until(lambda: charger.identity not in gw.connections)
        return asked

    asked = run(
        scenario, batcher=lambda: EventBatcher(publish=published.extend, flush_seconds=0.05)
    )
    assert asked[2] == "GetConfiguration"
    assert [e["kind"] for e in published if e["kind"] in ("connected", "disconnected")] == [
        "connected",
        "disconnected",
    ]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
