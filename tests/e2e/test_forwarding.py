"""Forwarding survives a gateway restart: a real gateway process, a real worker, an operator
that is down while a charger runs a session. The gateway is killed (kill -9: no shutdown code)
with the operator's frames in its durable buffer; a new gateway process with the same instance
name and buffer directory replays them, in order, once, when the operator is back."""

import asyncio
import sqlite3
import sys

import pytest
from django.db import connection

from chargers.models import ChargingSession, OcppMessage
from forwarding.models import OperatorConnection
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
        "FORWARDING_BUFFER_DIR": str(tmp_path),
        "FORWARDING_RECONNECT_MAX_SECONDS": "0.5",
        "FORWARDING_ALLOW_PRIVATE_HOSTS": "true",
    }
    url = f"ws://127.0.0.1:{gateway_port}/ocpp/"
    buffer_file = tmp_path / "gw-forwarding.sqlite3"

    def buffered():
        if not buffer_file.exists():
            return 0
        with sqlite3.connect(buffer_file) as db:
            return db.execute(
                "SELECT count(*) FROM outbox WHERE operator = ?", (operator.pk,)
            ).fetchone()[0]

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
