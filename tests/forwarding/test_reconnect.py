"""Reconnection to an operator: exponential backoff with jitter, capped; an operator that
accepts the connection and drops it without answering does not reset the backoff; once the
operator answers, the backlog is replayed in order and the next backoff starts afresh.

No timing is asserted: the gateway's `Forwarder.sleep` is replaced by one that records the delay
chosen and waits 10 ms, and its `random` is seeded."""

import asyncio
import random

import pytest
from websockets.asyncio.server import serve

from ocpp_gateway.upstream import BACKOFF_FIRST, reconnect_delay
from simulator.fleet import connect_charger

from ..e2e.processes import free_port
from ..ocpp_gateway.test_command_bus import configured
from ..ocpp_gateway.test_gateway import run, until
from ..ocpp_gateway.test_remote_charging import until_db
from .operator_csms import Operator, make_operator
from .test_relay import charger_calls

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]

CAP = 4.0


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.GATEWAY_HEARTBEAT_INTERVAL = 120
    settings.FORWARDING_REFRESH_SECONDS = 0.1
    settings.FORWARDING_RECONNECT_MAX_SECONDS = CAP
    settings.GATEWAY_INSTANCE_ID = "gw-reconnect-test"
    settings.FORWARDING_ALLOW_PRIVATE_HOSTS = True  # the operator runs on loopback


def nominal(failures):
    """The backoff before jitter after `failures` attempts in a row without an answer."""
    return min(CAP, BACKOFF_FIRST * 2 ** (failures - 1))


def test_reconnect_delay_doubles_from_the_first_step_up_to_the_cap_with_jitter(settings):
    settings.FORWARDING_RECONNECT_MAX_SECONDS = CAP
    low, high = random.Random(), random.Random()
    low.uniform = lambda a, b: a  # type: ignore[method-assign]
    high.uniform = lambda a, b: b  # type: ignore[method-assign]
    assert [reconnect_delay(n, high) for n in range(1, 8)] == [0.5, 1, 2, 4, 4, 4, 4]
    assert [reconnect_delay(n, low) for n in range(1, 5)] == [0.25, 0.5, 1, 2]
    assert reconnect_delay(0, high) == BACKOFF_FIRST  # after a connection that worked
    assert reconnect_delay(10_000, high) == CAP  # no overflow however long it lasts


def test_operator_down_then_flapping_then_back_backoff_jitter_cap_and_replay(charger):
    """Operator down (connection refused), then accepting and dropping connections without a
    word: the waits between attempts double up to the cap, each randomised; when it answers,
    what the charger sent meanwhile is replayed in order, and when it goes away again the
    backoff starts from its first step."""
    settled = configured(charger, "1.6")
    port = free_port()
    delays: list[float] = []
    flaps = [0]

    async def recorded_sleep(seconds):
        delays.append(seconds)
        await asyncio.sleep(0.01)

    async def hang_up(ws):
        flaps[0] += 1  # accepted, then closed without answering anything

    async def scenario(gw):
        gw.forwarder.random = random.Random(20261202)
        gw.forwarder.sleep = recorded_sleep
        operator = await until_db(lambda: make_operator(charger, f"ws://127.0.0.1:{port}/ocpp"))
        await gw.forwarder.refresh()
        async with connect_charger(gw.url, charger.identity, "1.6", configuration=settled) as cp:
            await cp.boot()
            await cp.status(1, "Available")
            await until(lambda: len(delays) >= 5, timeout=10)  # refused: nobody listens
            refused = len(delays)
            await cp.heartbeat()
            flapping = await serve(hang_up, "127.0.0.1", port, subprotocols=["ocpp1.6"])
            await until(lambda: flaps[0] >= 3, timeout=10)
            flapping.close()
            await flapping.wait_closed()
            async with Operator(port=port) as op:
                await until(lambda: len(op.calls("Heartbeat")) == 1, timeout=10)
                await until(lambda: gw.forwarder.buffer.count(operator.pk) == 0)
                before_success = len(delays)
            await until(lambda: len(delays) > before_success, timeout=10)  # it went away
            await gw.batcher.sync()
            return refused, before_success, op

    refused, before_success, op = run(scenario)
    waits = delays[:before_success]
    assert before_success >= refused + 3  # the hang-ups counted as failures too
    ratios = [wait / nominal(n) for n, wait in enumerate(waits, start=1)]
    assert all(0.5 <= r <= 1.0 for r in ratios), ratios  # jitter ×0.5–1 of the nominal step
    assert len(set(ratios)) == len(ratios)  # randomised, not one fixed factor
    assert max(waits) <= CAP and nominal(len(waits)) == CAP  # it grew up to the cap, not beyond
    # The operator answered: the next backoff starts from the first step again.
    assert BACKOFF_FIRST * 0.5 <= delays[before_success] <= BACKOFF_FIRST
    # What the charger sent while the operator was away, replayed in order, once.
    got = [(f[1], f[2]) for f in op.calls()]
    assert got == charger_calls(charger)
    assert [a for _, a in got] == ["BootNotification", "StatusNotification", "Heartbeat"]
