"""Several gateways share a fleet: two gateway processes, one Celery worker, one Redis, one
PostgreSQL. A charger moves from one gateway to the other while its old connection is still
open: the newest connection wins (the old gateway closes its stale socket), a portal command
reaches the charger on whichever gateway holds it, and the charger page shows the holder."""

import asyncio
import sys

import pytest
import redis
from django.conf import settings
from django.db import connection

from chargers import services
from chargers.models import Charger, ChargerCommand
from communities.models import Role
from simulator.fleet import connect_charger
from tests import builders

from .processes import Process, free_port, wait_for_port, wait_until

pytestmark = pytest.mark.e2e


def start_gateway(env: dict, name: str) -> Process:
    port = free_port()
    process = Process(
        name,
        [
            sys.executable,
            "manage.py",
            "run_gateway",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--instance-id",
            name,
        ],
        {**env, "GATEWAY_COMMAND_POLL_SECONDS": "0.2"},
    ).start()
    try:
        wait_for_port(port)
    except RuntimeError:
        process.stop()
        raise RuntimeError(process.output()) from None
    process.url = f"ws://127.0.0.1:{port}/ocpp/"
    return process


@pytest.fixture
def two_gateways(e2e_env, worker):
    started = []
    try:
        started.append(start_gateway(e2e_env, "gw-one"))
        started.append(start_gateway(e2e_env, "gw-two"))
        yield started
    finally:
        for process in started:
            process.stop()
            print(f"--- {process.name} output ---\n{process.output()}")


async def in_thread(func, *args):
    """Run a blocking function (ORM, waits) off the loop, leaving no database connection open
    in the helper thread (the test database is dropped at the end)."""

    def call():
        try:
            return func(*args)
        finally:
            connection.close()

    return await asyncio.to_thread(call)


def holder_in_database(identity):
    return (
        Charger.objects.filter(identity=identity, connected=True)
        .values_list("gateway", flat=True)
        .first()
    )


@pytest.fixture
def two_gw_community(e2e_env):
    return builders.make_community(name="Two gateways", slug="two-gw")


@pytest.mark.community_scope("two_gw_community")
def test_charger_moves_between_two_gateways_and_commands_follow(
    two_gateways, client, two_gw_community
):
    one, two = two_gateways
    community = two_gw_community
    manager = builders.make_member(community, Role.MANAGER).user
    charger = builders.make_charger(community, identity="GW-MOVER")
    Charger.objects.filter(pk=charger.pk).update(ocpp_version="1.6")
    charger.refresh_from_db()
    key = f"sparklin:gateway:charger:{charger.identity}"
    registry = redis.Redis.from_url(settings.REDIS_URL)

    def command(value):
        return services.change_configuration(
            charger=charger, actor=manager, setting="heartbeat_interval", value=value
        )

    def status(cmd):
        return ChargerCommand.objects.get(pk=cmd.pk).status

    async def scenario():
        async with connect_charger(one.url, charger.identity, "1.6") as first:
            await first.boot()
            await in_thread(
                wait_until,
                lambda: holder_in_database(charger.identity) == "gw-one",
                20,
                0.2,
                "the charger shown on gw-one",
            )
            cmd1 = await in_thread(command, "71")
            await in_thread(
                wait_until, lambda: status(cmd1) == "accepted", 20, 0.2, "command via gw-one"
            )
            assert ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "71"}) in (
                first.received
            )
            # The charger reconnects through the other gateway before the first one noticed
            # anything: the newest connection wins, gw-one closes its stale socket.
            async with connect_charger(two.url, charger.identity, "1.6") as second:
                await second.boot()
                await in_thread(
                    wait_until,
                    lambda: first._connection.close_code is not None,
                    20,
                    0.1,
                    "gw-one closing the stale socket",
                )
                old_close = (first._connection.close_code, first._connection.close_reason)
                await in_thread(
                    wait_until,
                    lambda: holder_in_database(charger.identity) == "gw-two",
                    20,
                    0.2,
                    "the charger shown on gw-two",
                )
                holder = registry.get(key).decode().rpartition("|")[0]
                cmd2 = await in_thread(command, "72")
                await in_thread(
                    wait_until, lambda: status(cmd2) == "accepted", 20, 0.2, "command via gw-two"
                )
                assert ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "72"}) in (
                    second.received
                )
                page = await in_thread(client_page)
        return old_close, holder, page

    def client_page():
        client.force_login(manager)
        return client.get(f"/c/two-gw/chargers/{charger.pk}/").content.decode()

    old_close, holder, page = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert old_close == (1000, "Connected to another gateway")
    assert holder == "gw-two"
    assert "gw-two" in page
    # The old gateway did not record a disconnection over the new connection.
    assert Charger.objects.get(pk=charger.pk).connected is True
    # Each command went out once, from the gateway holding the charger at the time.
    assert ChargerCommand.objects.filter(charger=charger, from_portal=True).count() == 2
