"""Fleet operations over loopback, both OCPP versions: the charger page's buttons become pending
commands, the gateway holding the charger sends each (Reset, UnlockConnector,
ChangeAvailability, TriggerMessage with the version's payload), the simulated charger answers
and reports, and the answer is recorded on the command."""

import pytest

from chargers.models import Charger, ChargerCommand, Connector, MeterSample
from simulator.fleet import connect_charger

from .test_command_bus import configured
from .test_gateway import run
from .test_remote_charging import post, until_db

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.GATEWAY_HEARTBEAT_INTERVAL = 120
    settings.GATEWAY_METER_SAMPLE_INTERVAL = 30
    settings.LANGUAGE_CODE = "en"


def answered(action):
    """The command's (status, response) once the charger's answer is recorded."""
    row = ChargerCommand.objects.filter(action=action).order_by("-created_at").first()
    if row is None or row.status in ("pending", "sent"):
        return None
    return row.status, row.response


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_every_operation_reaches_the_charger_and_its_answer_is_recorded(
    client, manager, charger, version
):
    settled = configured(charger, version)
    client.force_login(manager)
    base = f"/c/tilleuls/chargers/{charger.pk}"

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, version, configuration=settled) as cp:
            await cp.boot()
            await cp.status(1, "Available")
            outlet = await until_db(
                lambda: Connector.objects.filter(
                    charger=charger, status="Available", charger__connected=True
                ).first()
            )
            results = {}
            # Out of service: the charger accepts and reports the outlet Unavailable.
            await post_form(client, f"{base}/outlets/{outlet.pk}/availability/", {"available": "0"})
            results["availability"] = await until_db(lambda: answered("ChangeAvailability"))
            await until_db(lambda: Connector.objects.get(pk=outlet.pk).status == "Unavailable")
            # A status report of that outlet, then a meter reading.
            await post_form(client, f"{base}/report/", {"report": "status", "connector": outlet.pk})
            results["status"] = await until_db(lambda: answered("TriggerMessage"))
            await until_db(lambda: ChargerCommand.objects.filter(action="TriggerMessage").delete())
            await post_form(client, f"{base}/report/", {"report": "meter_values"})
            results["meter"] = await until_db(lambda: answered("TriggerMessage"))
            # Unlock: accepted as "Unlocked"; then a charger that fails to unlock.
            await post(client, f"{base}/outlets/{outlet.pk}/unlock/")
            results["unlock"] = await until_db(lambda: answered("UnlockConnector"))
            await until_db(lambda: ChargerCommand.objects.filter(action="UnlockConnector").delete())
            cp.refuse.add("UnlockConnector")
            await post(client, f"{base}/outlets/{outlet.pk}/unlock/")
            results["unlock_failed"] = await until_db(lambda: answered("UnlockConnector"))
            # Soft restart: accepted, and the charger boots again.
            booted = await until_db(lambda: Charger.objects.get(pk=charger.pk).last_boot_at)
            await post(client, f"{base}/reset/")
            results["reset"] = await until_db(lambda: answered("Reset"))
            await until_db(lambda: Charger.objects.get(pk=charger.pk).last_boot_at > booted)
            return results, list(cp.received)

    results, received = run(scenario, command_poll_seconds=0.05)
    calls = {action: payload for action, payload in received}
    assert results["availability"] == ("accepted", {"status": "Accepted"})
    assert results["status"] == ("accepted", {"status": "Accepted"})
    assert results["meter"] == ("accepted", {"status": "Accepted"})
    assert results["unlock"] == ("accepted", {"status": "Unlocked"})
    assert results["unlock_failed"] == ("rejected", {"status": "UnlockFailed"})
    assert results["reset"] == ("accepted", {"status": "Accepted"})
    if version == "1.6":
        assert calls["Reset"] == {"type": "Soft"}
        assert calls["UnlockConnector"] == {"connector_id": 1}
        assert calls["ChangeAvailability"] == {"connector_id": 1, "type": "Inoperative"}
    else:
        assert calls["Reset"] == {"type": "OnIdle"}
        assert calls["UnlockConnector"] == {"evse_id": 1, "connector_id": 1}
        assert calls["ChangeAvailability"] == {
            "operational_status": "Inoperative",
            "evse": {"id": 1, "connector_id": 1},
        }
    triggers = [p["requested_message"] for a, p in received if a == "TriggerMessage"]
    assert triggers == ["StatusNotification", "MeterValues"]
    # Every operation is in the audit log, with who asked.
    from communities.models import AuditEvent

    audited = set(AuditEvent.objects.filter(actor=manager).values_list("action", flat=True))
    assert {"charger.availability", "charger.trigger", "charger.unlock", "charger.reset"} <= audited
    assert not MeterSample.objects.exists()  # a reading outside a session is not a session's


async def post_form(client, url, data):
    return await until_db(lambda: client.post(url, data))


def test_a_connection_becomes_one_interval_closed_by_its_disconnection(charger):
    """The gateway names the interval: its disconnected event repeats the connection's start."""
    from chargers.models import ConnectionInterval

    settled = configured(charger, "1.6")

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "1.6", configuration=settled) as cp:
            await cp.boot()
            await until_db(lambda: ConnectionInterval.objects.filter(charger=charger).exists())
        return await until_db(
            lambda: (
                ConnectionInterval.objects.filter(charger=charger, ended_by="disconnected")
                .values_list("started_at", "ended_at")
                .first()
            )
        )

    started, ended = run(scenario, command_poll_seconds=0.05)
    assert ConnectionInterval.objects.filter(charger=charger).count() == 1
    assert Charger.objects.get(pk=charger.pk).connected_since == started < ended
