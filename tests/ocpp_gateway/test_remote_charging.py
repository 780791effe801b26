"""Charging from the portal over loopback: a driver's "Start charging" becomes a pending
RemoteStartTransaction (1.6) / RequestStartTransaction (2.0.1), the gateway holding the charger
delivers it, the simulated charger accepts and starts a transaction with the driver's app card,
and the session appears attributed to the driver; "Stop charging" then ends it remotely."""

import asyncio
import contextlib
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError

from chargers.models import ChargeCard, ChargerCommand, ChargingSession, Connector
from simulator.fleet import connect_charger

from .test_command_bus import configured
from .test_gateway import run

# The gateway and the worker enter their own scopes (scopes_disabled for cross-tenant lookups,
# the charger's community for its writes); the test body reads inside the community's scope.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.GATEWAY_HEARTBEAT_INTERVAL = 120
    settings.GATEWAY_METER_SAMPLE_INTERVAL = 30
    settings.LANGUAGE_CODE = "en"


async def until_db(read, timeout=5.0, step=0.05):
    """Poll a database read (run off the event loop) until it returns something truthy. SQLite's
    shared-cache test database answers "table is locked" at once while a gateway thread writes
    (no busy wait): such a read is simply tried again."""
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(OperationalError):
                if value := await sync_to_async(read)():
                    return value
            await asyncio.sleep(step)


async def post(client, url):
    """A portal POST from the test's thread, retried like `until_db` (its transaction is
    rolled back when SQLite refuses it, so a retry writes once)."""
    return await until_db(lambda: client.post(url))


def command_status(action):
    command = ChargerCommand.objects.filter(action=action).first()
    return command.status if command else None


@pytest.mark.parametrize(
    "version,start,stop",
    [
        ("1.6", "RemoteStartTransaction", "RemoteStopTransaction"),
        ("2.0.1", "RequestStartTransaction", "RequestStopTransaction"),
    ],
)
def test_remote_start_then_stop_from_the_portal(
    client, community, individual, charger, version, start, stop
):
    settled = configured(charger, version)
    client.force_login(individual)

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, version, configuration=settled) as cp:
            await cp.boot()
            await cp.status(1, "Available")
            connector = await until_db(
                lambda: Connector.objects.filter(
                    charger=charger, status="Available", charger__connected=True
                ).first()
            )
            answer = await post(client, f"/c/tilleuls/outlets/{connector.pk}/start/")
            assert answer.status_code == 302
            await until_db(lambda: command_status(start) == "accepted")
            session = await until_db(
                lambda: ChargingSession.objects.filter(
                    charger=charger, state="active", holder=individual
                ).first()
            )
            await until_db(
                lambda: ChargingSession.objects.get(pk=session.pk).meter_last_wh is not None
            )
            answer = await post(client, f"/c/tilleuls/sessions/{session.pk}/stop/")
            assert answer.status_code == 302
            await until_db(lambda: command_status(stop) == "accepted")
            await until_db(
                lambda: ChargingSession.objects.filter(pk=session.pk, state="completed").exists()
            )
            return [action for action, _ in cp.received]

    received = run(scenario, command_poll_seconds=0.05)
    assert start in received and stop in received
    card = ChargeCard.objects.get(holder=individual)
    assert card.uid.startswith("APP") and card.name == "Sparklin app"
    session = ChargingSession.objects.get(charger=charger)
    assert session.holder == individual and session.card == card and session.id_tag == card.uid
    assert session.state == "completed" and session.energy_wh == Decimal(3000)
    assert session.stop_reason == "Remote"
    started = ChargerCommand.objects.get(action=start)
    assert started.asked_by == individual and started.response == {"status": "Accepted"}
    stopped = ChargerCommand.objects.get(action=stop)
    assert stopped.session == session and stopped.response == {"status": "Accepted"}
    page = client.get("/c/tilleuls/outlets/").content.decode()
    assert 'data-remote-status="accepted"' in page
