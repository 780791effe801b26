"""The command bus over loopback: a setting changed in the portal (ChangeConfiguration in 1.6,
SetVariables in 2.0.1) becomes a pending ChargerCommand, the gateway holding the charger picks it
up, a simulated charger receives it, and its answer is stored on the command and in the
charger's configuration. Also: Reconfigure, and commands for chargers nobody holds time out."""

import asyncio
from datetime import timedelta

import pytest
import time_machine
from asgiref.sync import sync_to_async
from django.utils import timezone

from chargers.models import Charger, ChargerCommand
from ocpp_gateway.commands import PENDING_TTL, claim_pending
from ocpp_gateway.profiles import profile_16, profile_201
from simulator.fleet import connect_charger

from .. import builders
from .test_gateway import run, until

# The gateway and the worker enter their own scopes (scopes_disabled for cross-tenant lookups,
# the charger's community for its writes); the test body reads inside the community's scope.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.GATEWAY_HEARTBEAT_INTERVAL = 120
    settings.GATEWAY_METER_SAMPLE_INTERVAL = 30
    settings.LANGUAGE_CODE = "en"


def configured(charger, version) -> dict[str, str]:
    """As after a first connection: configured, firmware known. Returns the settings such a
    charger holds (its vendor profile), for `connect_charger(configuration=…)`: the check at
    boot then finds nothing to re-apply."""
    Charger.objects.filter(pk=charger.pk).update(
        ocpp_version=version, configured_at=timezone.now(), firmware_version="1.0.0"
    )
    vendor = Charger.objects.get(pk=charger.pk).vendor
    if version == "1.6":
        return dict(profile_16(vendor))
    return {f"{c}/{v}": value for c, v, value in profile_201(vendor)}


async def command_answered(charger, timeout=10.0):
    """Wait until the portal command's answer is recorded (the charger's reply travels back
    through the event pipeline after the charger has already applied the value)."""
    read = sync_to_async(
        lambda: list(
            ChargerCommand.objects.filter(charger=charger, from_portal=True).values_list(
                "status", flat=True
            )
        )
    )
    async with asyncio.timeout(timeout):
        while True:
            statuses = await read()
            if statuses and all(s not in ("pending", "sent") for s in statuses):
                return
            await asyncio.sleep(0.05)


def command_status(uid_filter):
    row = ChargerCommand.objects.filter(**uid_filter).first()
    return row.status if row else None


def test_16_change_configuration_from_the_portal_reaches_the_charger(client, manager, charger):
    settled = configured(charger, "1.6")
    client.force_login(manager)
    url = f"/c/tilleuls/chargers/{charger.pk}/configuration/"

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "1.6", configuration=settled) as cp:
            await cp.boot()
            await sync_to_async(client.post)(url, {"setting": "heartbeat_interval", "value": "77"})
            await until(
                lambda: (
                    ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "77"})
                    in cp.received
                )
            )
            await command_answered(charger)
            return dict(cp.configuration)

    configuration = run(scenario, command_poll_seconds=0.05)
    assert configuration["HeartbeatInterval"] == "77"
    command = ChargerCommand.objects.get(charger=charger, from_portal=True)
    assert command.action == "ChangeConfiguration" and command.status == "accepted"
    assert command.response == {"status": "Accepted"} and command.asked_by == manager
    assert Charger.objects.get(pk=charger.pk).configuration["HeartbeatInterval"] == "77"
    # Recorded once: the portal's row, not a second one from the gateway.
    assert ChargerCommand.objects.filter(action="ChangeConfiguration").count() == 1
    page = client.get(url).content.decode()
    assert 'data-command-status="accepted"' in page


def test_201_set_variables_from_the_portal_reaches_the_station(client, manager, charger):
    settled = configured(charger, "2.0.1")
    client.force_login(manager)
    url = f"/c/tilleuls/chargers/{charger.pk}/configuration/"

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "2.0.1", configuration=settled) as cp:
            await cp.boot()
            await sync_to_async(client.post)(
                url, {"setting": "meter_sample_interval", "value": "15"}
            )
            await until(lambda: cp.count("SetVariables") == 1)
            await command_answered(charger)
            return dict(cp.configuration)

    configuration = run(scenario, command_poll_seconds=0.05)
    assert configuration["SampledDataCtrlr/TxUpdatedInterval"] == "15"
    command = ChargerCommand.objects.get(charger=charger, from_portal=True)
    assert command.action == "SetVariables" and command.status == "accepted"
    assert command.response["setVariableResult"][0]["attributeStatus"] == "Accepted"
    stored = Charger.objects.get(pk=charger.pk).configuration
    assert stored["SampledDataCtrlr/TxUpdatedInterval"] == "15"


def test_reconfigure_reads_and_applies_the_vendor_profile_again(client, manager, charger):
    Charger.objects.filter(pk=charger.pk).update(vendor="spark1")
    settled = configured(charger, "1.6")
    client.force_login(manager)

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "1.6", configuration=settled) as cp:
            await cp.boot()
            await until(lambda: cp.count("GetConfiguration") == 1)  # the check at boot
            await asyncio.sleep(0.1)
            changed_at_boot = cp.count("ChangeConfiguration")
            cp.configuration["ClockAlignedDataInterval"] = "0"  # changed on the charger
            await sync_to_async(client.post)(f"/c/tilleuls/chargers/{charger.pk}/reconfigure/")
            await until(lambda: cp.count("GetConfiguration") == 2)
            await until(lambda: cp.count("ChangeConfiguration") == 1)
            await until(lambda: gw.batcher.pending == 0)
            await asyncio.sleep(0.1)
            full_read = cp.received[[a for a, _ in cp.received].index("GetConfiguration", 1)]
            return dict(cp.configuration), changed_at_boot, full_read

    configuration, changed_at_boot, full_read = run(scenario, command_poll_seconds=0.05)
    assert changed_at_boot == 0  # in its profile: nothing re-applied at boot
    assert not full_read[1].get("key")  # "Reconfigure" reads the whole configuration
    # The Spark 1 profile: the product's settings plus clock-aligned energy readings.
    assert configuration["ClockAlignedDataInterval"] == "900"
    assert configuration["HeartbeatInterval"] == "120"
    assert command_status({"action": "Reconfigure"}) == "accepted"


def test_commands_for_chargers_nobody_holds_time_out(charger, manager):
    command = ChargerCommand.objects.create(
        community=charger.community,
        charger=charger,
        action="ChangeConfiguration",
        payload={"key": "HeartbeatInterval", "value": "60"},
        from_portal=True,
    )
    assert claim_pending(["SOMEONE-ELSE"]) == []
    assert command_status({"pk": command.pk}) == "pending"
    with time_machine.travel(timezone.now() + timedelta(seconds=PENDING_TTL + 1)):
        assert claim_pending([charger.identity]) == []
    assert command_status({"pk": command.pk}) == "timed_out"


def test_a_command_is_claimed_once(charger):
    ChargerCommand.objects.create(
        community=charger.community, charger=charger, action="Reset", payload={}, from_portal=True
    )
    assert len(claim_pending([charger.identity])) == 1
    assert claim_pending([charger.identity]) == []  # a second gateway gets nothing


def test_a_gateway_holding_a_large_fleet_claims_its_commands(community, site):
    """Identities are read in bounded chunks, and commands for chargers held by another gateway
    never crowd out this gateway's: a charger past the first thousand is served."""
    elsewhere = Charger.objects.bulk_create(
        [Charger(community=community, site=site, identity=f"OTHER-{n:04d}") for n in range(250)]
    )
    ChargerCommand.objects.bulk_create(
        [
            ChargerCommand(
                community=community, charger=c, action="Reset", payload={}, from_portal=True
            )
            for c in elsewhere
        ]
    )
    held = [f"FLEET-{n:05d}" for n in range(2500)]
    charger = builders.make_charger(community, site=site, identity=held[-1])
    ChargerCommand.objects.create(
        community=community, charger=charger, action="Reset", payload={}, from_portal=True
    )
    claimed = claim_pending(held)
    assert [row["charger__identity"] for row in claimed] == [held[-1]]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_charger_back_without_a_reboot_gets_commands_once_it_talks(charger, version):
    """Most chargers come back from a network drop without a BootNotification: their boot on
    an earlier connection was accepted. Nothing is sent to a connection that has said nothing
    yet (it may be about to boot); once it talks, the pending commands go."""
    import json

    from chargers.services import queue_command

    from .test_gateway import raw_client

    Charger.objects.filter(pk=charger.pk).update(ocpp_version=version)
    queue_command(
        charger=Charger.objects.get(pk=charger.pk),
        actor=None,
        action="GetLocalListVersion",
        payload={},
    )

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity, protocols=[f"ocpp{version}"])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):  # five polls of the command bus
                await ws.recv()
        await ws.send(json.dumps([2, "h1", "Heartbeat", {}]))
        frames = []
        async with asyncio.timeout(5):
            while not any(f[0] == 2 for f in frames):
                frames.append(json.loads(await ws.recv()))
        call = next(f for f in frames if f[0] == 2)
        field = "listVersion" if version == "1.6" else "versionNumber"
        await ws.send(json.dumps([3, call[1], {field: 4}]))
        await command_answered(charger)
        await ws.close()
        return call

    call = run(scenario, command_poll_seconds=0.1)
    assert call[2:] == ["GetLocalListVersion", {}]
    command = ChargerCommand.objects.get(charger=charger, action="GetLocalListVersion")
    assert command.status == "accepted"
