"""Forwarding survives a gateway's death and follows the charger: real gateway processes, a real
worker, an operator that is down while a charger runs a session.

- The gateway is killed (kill -9: no shutdown code) with the operator's frames in the buffer; a
  new gateway process with the same instance name replays them, in order, once, when the
  operator is back.
- The charger moves to a second gateway process (the first still running, then killed while it
  held the relay) while the operator is down: the frames reach the operator from the second."""

import asyncio
import sys

import pytest
from django.db import connection

from chargers.models import ChargingSession, OcppMessage
from forwarding.models import OperatorConnection, OutboxFrame
from simulator.fleet import connect_charger
from tests import builders
from tests.forwarding.operator_csms import Operator, make_operator

from .processes import Process, free_port, wait_for_port, wait_until

pytestmark = pytest.mark.e2e

TRANSACTION = ("StartTransaction", "MeterValues", "StopTransaction")


async def in_thread(func, *args):
    def call():
        try:
            return func(*args)
        finally:
            connection.close()

    return await asyncio.to_thread(call)


def start_gateway(env, port):
    process = Process(
        "gateway",
        [sys.executable, "manage.py", "run_gateway", "--host", "127.0.0.1", "--port", str(port)],
        env,
    ).start()
    try:
        wait_for_port(port)
    except RuntimeError:
        process.stop()
        raise RuntimeError(process.output()) from None
    return process


def buffered_for(operator):
    return OutboxFrame.objects.filter(operator=operator).count()


@pytest.fixture
def fwd_community(e2e_env):
    return builders.make_community(name="Forwarding", slug="forwarding")


@pytest.mark.community_scope("fwd_community")
def test_gateway_killed_with_a_non_empty_buffer_loses_nothing(
    e2e_env, worker, fwd_community, tmp_path
):
    community = fwd_community
    charger = builders.make_charger(community, identity="FWD-RESTART")
    card = builders.make_card(community, uid="04FWD001")
    operator_port, gateway_port = free_port(), free_port()
    operator = make_operator(charger, f"ws://127.0.0.1:{operator_port}/ocpp")
    env = {
        **e2e_env,
        "GATEWAY_INSTANCE_ID": "gw-forwarding",
        "FORWARDING_RECONNECT_MAX_SECONDS": "0.5",
        "FORWARDING_ALLOW_PRIVATE_HOSTS": "true",
    }
    url = f"ws://127.0.0.1:{gateway_port}/ocpp/"

    def buffered():
        return buffered_for(operator)

    def completed():
        return ChargingSession.objects.filter(charger=charger, state="completed").exists()

    first = start_gateway(env, gateway_port)
    try:

        async def session():
            async with connect_charger(url, charger.identity, "1.6") as cp:
                await cp.boot()
                await cp.charge(card.uid, energy_wh=6000, samples=2)
                await in_thread(wait_until, completed, 30, 0.2, "the session recorded")

        asyncio.run(session())
        wait_until(lambda: buffered() >= 4, 10, 0.1, "the transaction messages buffered")
    finally:
        first.kill()  # no shutdown code: only what is on disk survives
        print(f"--- first gateway ---\n{first.output()}")
    held = buffered()

    second = start_gateway(env, gateway_port)
    try:

        async def replay():
            async with Operator(port=operator_port) as op:
                async with connect_charger(url, charger.identity, "1.6") as cp:
                    await cp.heartbeat()
                    async with asyncio.timeout(30):
                        while not op.calls("StopTransaction"):
                            await asyncio.sleep(0.1)
                await in_thread(wait_until, lambda: buffered() == 0, 10, 0.1, "buffer emptied")
                return op

        op = asyncio.run(replay())
    finally:
        second.stop()
        print(f"--- second gateway ---\n{second.output()}")

    sent = list(
        OcppMessage.objects.filter(
            charger=charger, direction="in", message_type=2, action__in=TRANSACTION
        )
        .order_by("at", "id")
        .values_list("unique_id", "action")
    )
    received = [(f[1], f[2]) for f in op.calls() if f[2] in TRANSACTION]
    assert held >= len(sent) == 4  # start, two meter values, stop
    assert received == sent  # in order, each once
    session = ChargingSession.objects.get(charger=charger)
    assert session.energy_wh == 6000 and session.state == "completed"
    assert OperatorConnection.objects.get(pk=operator.pk).last_message_at is not None


@pytest.mark.community_scope("fwd_community")
def test_frames_buffered_on_a_gateway_the_charger_left_reach_the_operator_from_the_new_one(
    e2e_env, worker, fwd_community
):
    """Two gateway processes. The operator is down while the charger runs a session through the
    first; the charger reconnects through the second (the first still running, and killed -9
    while the charger was still connected to it, so its lease expires rather than being
    released); the operator comes back and receives every transaction message from the second,
    in order, once."""
    community = fwd_community
    charger = builders.make_charger(community, identity="FWD-MOVES")
    card = builders.make_card(community, uid="04FWD002")
    operator_port, first_port, second_port = free_port(), free_port(), free_port()
    operator = make_operator(charger, f"ws://127.0.0.1:{operator_port}/ocpp")
    env = {
        **e2e_env,
        "FORWARDING_RECONNECT_MAX_SECONDS": "0.5",
        "FORWARDING_ALLOW_PRIVATE_HOSTS": "true",
        "FORWARDING_LEASE_SECONDS": "3",
    }

    def completed():
        return ChargingSession.objects.filter(charger=charger, state="completed").exists()

    first = start_gateway({**env, "GATEWAY_INSTANCE_ID": "gw-first"}, first_port)
    second = start_gateway({**env, "GATEWAY_INSTANCE_ID": "gw-second"}, second_port)
    try:

        async def session():
            url = f"ws://127.0.0.1:{first_port}/ocpp/"
            async with connect_charger(url, charger.identity, "1.6") as cp:
                await cp.boot()
                await cp.charge(card.uid, energy_wh=5000, samples=2)
                await in_thread(wait_until, completed, 30, 0.2, "the session recorded")
                await in_thread(
                    wait_until, lambda: buffered_for(operator) >= 4, 10, 0.1, "buffered"
                )
                first.kill()  # dies holding the charger and the relay's lease

        asyncio.run(session())
        held = buffered_for(operator)

        async def moved():
            url = f"ws://127.0.0.1:{second_port}/ocpp/"
            async with Operator(port=operator_port) as op:
                async with connect_charger(url, charger.identity, "1.6") as cp:
                    await cp.heartbeat()
                    async with asyncio.timeout(30):
                        while not op.calls("Heartbeat"):
                            await asyncio.sleep(0.1)
                await in_thread(
                    wait_until, lambda: buffered_for(operator) == 0, 10, 0.1, "buffer emptied"
                )
                return op

        op = asyncio.run(moved())
    finally:
        first.kill()
        second.stop()
        print(f"--- first gateway ---\n{first.output()}\n--- second ---\n{second.output()}")

    sent = list(
        OcppMessage.objects.filter(
            charger=charger, direction="in", message_type=2, action__in=TRANSACTION
        )
        .order_by("at", "id")
        .values_list("unique_id", "action")
    )
    received = [(f[1], f[2]) for f in op.calls() if f[2] in TRANSACTION]
    assert held >= len(sent) == 4  # start, two meter values, stop
    assert received == sent  # in order, each once
    assert len(op.calls("BootNotification")) == 1  # one upstream connection: the second's
    wait_until(
        lambda: OperatorConnection.objects.get(pk=operator.pk).gateway == "gw-second",
        10,
        0.2,
        "the state reported by the second gateway",
    )
