"""Offline authorization: local lists sent in full then as differences, versions tracked per
charger, a version mismatch answered with a full list, chargers without support flagged, the
offline behaviour of the site sent once per change; and a list actually delivered by the gateway
to a charger."""

import asyncio
import json

import pytest
from django.db import connections
from django.utils import timezone
from django_scopes import scope

from chargers import services as charger_services
from chargers.models import Charger, ChargerCommand
from rules import services
from rules.locallists import sync_local_lists
from rules.models import LocalList, Mode, OfflineMode
from rules.tasks import sync_local_lists as sync_task
from tests import builders
from tests.ocpp_gateway.test_gateway import _fast, raw_client, run  # noqa: F401


def _connected(charger, version="1.6"):
    charger.connected, charger.ocpp_version = True, version
    charger.save()
    builders.make_connector(charger, connector_id=1)
    return charger


def _answer(command, status):
    command.status = (
        ChargerCommand.Status.ACCEPTED if status == "Accepted" else ChargerCommand.Status.REJECTED
    )
    command.response = {"status": status}
    command.save()


def _lists(charger):
    return list(
        ChargerCommand.objects.filter(charger=charger, action="SendLocalList").order_by("pk")
    )


@pytest.mark.community_scope
def test_full_then_differential_then_mismatch(community, manager, individual, charger):
    _connected(charger)
    builders.make_card(community, holder=individual, uid="AAAA")
    builders.make_card(community, holder=individual, uid="BBBB")
    assert sync_local_lists(community=community) == 1
    (full,) = _lists(charger)
    assert full.payload == {
        "listVersion": 1,
        "updateType": "Full",
        "localAuthorizationList": [
            {"idTag": "AAAA", "idTagInfo": {"status": "Accepted"}},
            {"idTag": "BBBB", "idTagInfo": {"status": "Accepted"}},
        ],
    }
    # The offline behaviour of the site (known cards by default), once.
    offline = ChargerCommand.objects.filter(charger=charger, action="ChangeConfiguration")
    assert {c.payload["key"]: c.payload["value"] for c in offline} == {
        "LocalAuthListEnabled": "true",
        "LocalAuthorizeOffline": "true",
        "AllowOfflineTxForUnknownId": "false",
        "LocalPreAuthorize": "false",
    }
    assert sync_local_lists(community=community) == 1  # still on its way: nothing new
    assert len(_lists(charger)) == 1
    _answer(full, "Accepted")
    sync_local_lists(community=community)
    state = LocalList.objects.get(charger=charger)
    assert state.version == 1 and state.in_sync and len(_lists(charger)) == 1

    card_b = ChargeCard_get("BBBB")
    charger_services.deactivate_card(card=card_b, actor=manager)
    builders.make_card(community, holder=individual, uid="CCCC")
    sync_local_lists(community=community)
    diff = _lists(charger)[-1]
    assert diff.payload == {
        "listVersion": 2,
        "updateType": "Differential",
        "localAuthorizationList": [
            {"idTag": "CCCC", "idTagInfo": {"status": "Accepted"}},
            {"idTag": "BBBB"},
        ],
    }
    _answer(diff, "VersionMismatch")
    sync_local_lists(community=community)
    again = _lists(charger)[-1]
    assert again.payload["updateType"] == "Full" and again.payload["listVersion"] == 1
    assert ChargerCommand.objects.filter(action="ChangeConfiguration").count() == 4


def ChargeCard_get(uid):
    from chargers.models import ChargeCard

    return ChargeCard.objects.get(uid=uid)


@pytest.mark.community_scope
def test_rules_shape_the_list_and_the_offline_behaviour(
    community, manager, individual, charger, site
):
    _connected(charger, "2.0.1")
    builders.make_card(community, holder=individual, uid="AAAA")
    builders.make_card(community, holder=manager, uid="MMMM")
    services.set_policy(
        community=community, actor=manager, mode=Mode.CHOSEN, site=site, users=[manager]
    )
    services.set_offline_policy(site=site, actor=manager, mode=OfflineMode.EVERYONE)
    sync_local_lists(community=community)
    (sent,) = _lists(charger)
    assert sent.payload == {
        "versionNumber": 1,
        "updateType": "Full",
        "localAuthorizationList": [
            {
                "idToken": {"idToken": "MMMM", "type": "ISO14443"},
                "idTokenInfo": {"status": "Accepted"},
            }
        ],
    }
    (variables,) = ChargerCommand.objects.filter(charger=charger, action="SetVariables")
    values = {
        (v["component"]["name"], v["variable"]["name"]): v["attributeValue"]
        for v in variables.payload["setVariableData"]
    }
    assert values[("AuthCtrlr", "OfflineTxForUnknownIdEnabled")] == "true"
    assert values[("LocalAuthListCtrlr", "Enabled")] == "true"


@pytest.mark.community_scope
def test_a_charger_without_local_lists_is_flagged(client, manager, community, individual, charger):
    _connected(charger)
    builders.make_card(community, holder=individual, uid="AAAA")
    sync_local_lists(community=community)
    _answer(_lists(charger)[0], "NotSupported")
    sync_local_lists(community=community)
    assert LocalList.objects.get(charger=charger).supported is False
    sync_local_lists(community=community)
    assert len(_lists(charger)) == 1  # left alone
    client.force_login(manager)
    page = client.get(f"/c/tilleuls/chargers/{charger.pk}/", HTTP_ACCEPT_LANGUAGE="en")
    assert "badge-faulted" in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_gateway_delivers_the_list_and_records_the_answer(community, individual, charger):
    builders.make_card(community, holder=individual, uid="04A23B11")

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity, protocols=["ocpp1.6"])
        await ws.send(
            json.dumps(
                [2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]
            )
        )
        received = {}
        connected = False
        async with asyncio.timeout(10):
            while "SendLocalList" not in received:
                frame = json.loads(await ws.recv())
                if frame[0] == 3 and not connected:
                    connected = True
                    await asyncio.to_thread(_in_thread, _sync_as_beat)
                    continue
                if frame[0] != 2:
                    continue
                received[frame[2]] = frame[3]
                answer = (
                    {"configurationKey": []}
                    if frame[2] == "GetConfiguration"
                    else {"status": "Accepted"}
                )
                await ws.send(json.dumps([3, frame[1], answer]))
        await asyncio.sleep(0.3)
        await ws.close()
        return received["SendLocalList"]

    def _in_thread(func):
        try:
            func()
        finally:
            connections.close_all()  # this thread's connection, not left to the test database

    def _sync_as_beat():
        with scope(community=community):
            c = Charger.objects.get(pk=charger.pk)
            c.connected, c.ocpp_version = True, "1.6"
            c.save()
        sync_task()

    sent = run(scenario, command_poll_seconds=0.1)
    assert sent["updateType"] == "Full" and sent["localAuthorizationList"][0]["idTag"] == "04A23B11"
    with scope(community=community):
        command = ChargerCommand.objects.get(action="SendLocalList")
        assert command.status == ChargerCommand.Status.ACCEPTED
    _sync_as_beat()  # the next beat (connected again) takes the answer into account
    with scope(community=community):
        state = LocalList.objects.get(charger=charger)
        assert state.version == 1 and state.in_sync and state.synced_at <= timezone.now()


def _answer_version(command, response):
    command.status, command.response = ChargerCommand.Status.ACCEPTED, response
    command.save()


def _version_checks(charger):
    return list(
        ChargerCommand.objects.filter(charger=charger, action="GetLocalListVersion").order_by("pk")
    )


@pytest.mark.community_scope
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_list_version_checked_after_each_boot_a_mismatch_resends_it_in_full(
    client, community, manager, individual, charger, version
):
    _connected(charger, version)
    field = "listVersion" if version == "1.6" else "versionNumber"
    builders.make_card(community, holder=individual, uid="AAAA")
    sync_local_lists(community=community)
    (full,) = _lists(charger)
    _answer(full, "Accepted")
    sync_local_lists(community=community)
    assert _version_checks(charger) == []  # just accepted: its version is known
    offline_before = ChargerCommand.objects.exclude(
        action__in=["SendLocalList", "GetLocalListVersion"]
    ).count()

    # The charger restarts: its version is asked once, and matches.
    charger.last_boot_at = timezone.now()
    charger.save()
    sync_local_lists(community=community)
    sync_local_lists(community=community)
    (check,) = _version_checks(charger)
    assert check.payload == {}
    _answer_version(check, {field: 1})
    sync_local_lists(community=community)
    state = LocalList.objects.get(charger=charger)
    assert (state.reported_version, state.version, state.in_sync) == (1, 1, True)
    assert len(_lists(charger)) == 1 and len(_version_checks(charger)) == 1

    # It reconnects after a factory reset: its list is gone. Sent again in full, with the
    # offline behaviour.
    charger.connected_since = timezone.now()
    charger.save()
    sync_local_lists(community=community)
    check = _version_checks(charger)[-1]
    _answer_version(check, {field: 0})
    sync_local_lists(community=community)
    again = _lists(charger)[-1]
    assert len(_lists(charger)) == 2
    assert again.payload["updateType"] == "Full"
    assert again.payload.get("listVersion", again.payload.get("versionNumber")) == 1
    offline_after = ChargerCommand.objects.exclude(
        action__in=["SendLocalList", "GetLocalListVersion"]
    ).count()
    assert offline_after > offline_before
    state = LocalList.objects.get(charger=charger)
    assert state.reported_version == 0 and not state.in_sync
    client.force_login(manager)
    page = client.get(f"/c/tilleuls/chargers/{charger.pk}/", HTTP_ACCEPT_LANGUAGE="en")
    assert "Differs: the full list is sent again" in page.content.decode()
    _answer(again, "Accepted")
    sync_local_lists(community=community)
    state = LocalList.objects.get(charger=charger)
    assert state.in_sync and state.version == 1 and not state.reported_differs


@pytest.mark.community_scope
def test_16_version_minus_one_flags_a_charger_without_local_lists(community, individual, charger):
    _connected(charger)
    builders.make_card(community, holder=individual, uid="AAAA")
    sync_local_lists(community=community)
    _answer(_lists(charger)[0], "Accepted")
    sync_local_lists(community=community)
    charger.last_boot_at = timezone.now()
    charger.save()
    sync_local_lists(community=community)
    _answer_version(_version_checks(charger)[0], {"listVersion": -1})
    sync_local_lists(community=community)
    assert LocalList.objects.get(charger=charger).supported is False


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_the_gateway_asks_the_version_after_a_boot_and_resends_a_lost_list(
    community, individual, charger, version
):
    """Loopback: Sparklin had list version 5 accepted; the charger boots and reports 3 to
    GetLocalListVersion; the next list it receives is a full one."""
    builders.make_card(community, holder=individual, uid="04A23B11")
    builders.make_connector(charger, 1)
    LocalList.objects.create(
        community=community,
        charger=charger,
        version=5,
        entries={"04A23B11": "Accepted"},
        supported=True,
        in_sync=True,
        offline_mode="known",
        synced_at=timezone.now() - timezone.timedelta(days=1),
    )
    if version == "1.6":
        boot = {"chargePointVendor": "V", "chargePointModel": "M"}
    else:
        boot = {"chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"}

    def _in_thread(func):
        try:
            func()
        finally:
            connections.close_all()

    def _sync_as_beat():
        with scope(community=community):
            Charger.objects.filter(pk=charger.pk).update(connected=True, ocpp_version=version)
        sync_task()

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity, protocols=[f"ocpp{version}"])
        await ws.send(json.dumps([2, "b1", "BootNotification", boot]))
        received = []
        async with asyncio.timeout(12):
            while "SendLocalList" not in [action for action, _ in received]:
                frame = json.loads(await ws.recv())
                if frame[0] == 3 and frame[1] == "b1":
                    await asyncio.sleep(0.3)  # the boot recorded (last_boot_at)
                    await asyncio.to_thread(_in_thread, _sync_as_beat)
                    continue
                if frame[0] != 2:
                    continue
                received.append((frame[2], frame[3]))
                if frame[2] == "GetLocalListVersion":
                    answer = {"listVersion": 3} if version == "1.6" else {"versionNumber": 3}
                elif frame[2] == "GetConfiguration":
                    answer = {"configurationKey": []}
                else:
                    answer = {"status": "Accepted"}
                await ws.send(json.dumps([3, frame[1], answer]))
                if frame[2] == "GetLocalListVersion":
                    await asyncio.sleep(0.3)  # the answer recorded
                    await asyncio.to_thread(_in_thread, _sync_as_beat)
        await asyncio.sleep(0.3)
        await ws.close()
        return received

    received = run(scenario, command_poll_seconds=0.1)
    actions = [action for action, _ in received]
    assert actions.count("GetLocalListVersion") == 1
    assert actions.index("GetLocalListVersion") < actions.index("SendLocalList")
    sent = dict(received)["SendLocalList"]
    assert sent["updateType"] == "Full"
    assert sent.get("listVersion", sent.get("versionNumber")) == 1
    with scope(community=community):
        state = LocalList.objects.get(charger=charger)
        assert state.reported_version == 3
        check = ChargerCommand.objects.get(action="GetLocalListVersion")
        assert check.status == ChargerCommand.Status.ACCEPTED


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_charger_reconnecting_without_a_boot_is_asked_its_version_once_per_connection(
    community, individual, charger, version
):
    """Loopback: most chargers come back from a network drop without rebooting (no
    BootNotification, they just talk: a heartbeat). Sparklin had list version 5 accepted.
    First connection: asked once (answer 5: nothing resent, however many syncs); second
    connection, again without a boot: asked again (answer 3: the list lost) and sent in full."""
    builders.make_card(community, holder=individual, uid="04A23B11")
    builders.make_connector(charger, 1)
    LocalList.objects.create(
        community=community,
        charger=charger,
        version=5,
        entries={"04A23B11": "Accepted"},
        supported=True,
        in_sync=True,
        offline_mode="known",
        synced_at=timezone.now() - timezone.timedelta(days=1),
    )
    charger.ocpp_version = version
    charger.last_boot_at = timezone.now() - timezone.timedelta(days=2)
    charger.save()
    field = "listVersion" if version == "1.6" else "versionNumber"

    def _beat():
        try:
            sync_task()
        finally:
            connections.close_all()  # this thread's connection, not left to the test database

    async def connection(gw, reported, syncs):
        """One connection without a boot: a heartbeat, then `syncs` beats, each once what the
        charger answered is recorded; returns the calls received."""
        ws = await raw_client(gw.url, charger.identity, protocols=[f"ocpp{version}"])
        received = []
        async with asyncio.timeout(10):
            await ws.send(json.dumps([2, "h1", "Heartbeat", {}]))
            assert json.loads(await ws.recv())[0] == 3
            for _ in range(syncs):
                await gw.batcher.sync()  # the connected event (and any answer) recorded
                await asyncio.to_thread(_beat)
                try:
                    async with asyncio.timeout(1.0):  # the command poll runs every 0.1 s
                        frame = json.loads(await ws.recv())
                except TimeoutError:
                    continue  # nothing asked by this beat
                received.append((frame[2], frame[3]))
                answer = {field: reported} if frame[2] == "GetLocalListVersion" else {}
                if frame[2] != "GetLocalListVersion":
                    answer = {"status": "Accepted"}
                await ws.send(json.dumps([3, frame[1], answer]))
                await asyncio.sleep(0.2)
        await gw.batcher.sync()
        await ws.close()
        await asyncio.sleep(0.2)  # the disconnection recorded
        return received

    async def scenario(gw):
        first = await connection(gw, reported=5, syncs=3)
        second = await connection(gw, reported=3, syncs=3)
        return first, second

    first, second = run(scenario, command_poll_seconds=0.1)
    assert [action for action, _ in first] == ["GetLocalListVersion"]
    actions = [action for action, _ in second]
    assert actions[0] == "GetLocalListVersion" and actions.count("GetLocalListVersion") == 1
    sent = dict(second)["SendLocalList"]
    assert sent["updateType"] == "Full" and sent[field] == 6 - 5  # a new list, from version 1
    with scope(community=community):
        assert ChargerCommand.objects.filter(action="GetLocalListVersion").count() == 2
        state = LocalList.objects.get(charger=charger)
        assert state.version == 1 and state.entries == {"04A23B11": "Accepted"}


@pytest.mark.community_scope
def test_a_version_question_left_unanswered_is_asked_again_on_the_next_connection_only(
    community, individual, charger
):
    _connected(charger)
    builders.make_card(community, holder=individual, uid="AAAA")
    sync_local_lists(community=community)
    _answer(_lists(charger)[0], "Accepted")
    sync_local_lists(community=community)
    charger.connected_since = timezone.now()
    charger.save()
    sync_local_lists(community=community)
    (asked,) = _version_checks(charger)
    # The charger hung up before answering and came back (no boot); the question times out
    # only afterwards.
    charger.connected_since = timezone.now()
    charger.save()
    asked.status, asked.response = ChargerCommand.Status.TIMED_OUT, None
    asked.save()
    sync_local_lists(community=community)
    assert len(_version_checks(charger)) == 2  # the new connection is asked
    again = _version_checks(charger)[-1]
    again.status, again.response = ChargerCommand.Status.TIMED_OUT, None
    again.save()
    sync_local_lists(community=community)
    sync_local_lists(community=community)
    assert len(_version_checks(charger)) == 2  # not asked again and again on this connection


@pytest.mark.community_scope
def test_a_charger_answering_not_implemented_is_flagged_not_sent_the_list_forever(
    community, individual, charger
):
    """A 1.6 charger without the LocalAuthListManagement profile answers a CALLERROR
    (NotImplemented), not a SendLocalList.conf."""
    _connected(charger)
    builders.make_card(community, holder=individual, uid="AAAA")
    sync_local_lists(community=community)
    (sent,) = _lists(charger)
    sent.status = ChargerCommand.Status.FAILED
    sent.response = {"errorCode": "NotImplemented", "errorDescription": "", "errorDetails": {}}
    sent.save()
    sync_local_lists(community=community)
    sync_local_lists(community=community)
    assert LocalList.objects.get(charger=charger).supported is False
    assert len(_lists(charger)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.community_scope
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_the_simulated_charger_holds_the_list_it_is_sent(community, individual, charger, version):
    """The demo's simulated chargers (simulator.operations) keep the list the beat sends: a full
    list first, then a difference applied on top; the next version check finds them in step."""
    from simulator.fleet import connect_charger
    from tests.ocpp_gateway.test_command_bus import configured
    from tests.ocpp_gateway.test_remote_charging import until_db

    builders.make_card(community, holder=individual, uid="04A23B11")
    settled = configured(charger, version)

    def _in_thread(func):
        try:
            func()
        finally:
            connections.close_all()

    def _second_card():
        with scope(community=community):
            builders.make_card(community, holder=individual, uid="04A23B22")

    def _connected():
        with scope(community=community):
            return Charger.objects.get(pk=charger.pk).connected

    def _accepted_lists():
        with scope(community=community):
            return ChargerCommand.objects.filter(
                action="SendLocalList", status=ChargerCommand.Status.ACCEPTED
            ).count()

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, version, configuration=settled) as cp:
            await cp.boot()
            await cp.status(1, "Available")
            await until_db(_connected)
            await asyncio.to_thread(_in_thread, sync_task)
            await until_db(lambda: _accepted_lists() == 1)
            first = (cp.local_list_version, set(cp.local_list))
            await asyncio.to_thread(_in_thread, _second_card)
            await asyncio.to_thread(_in_thread, sync_task)
            await until_db(lambda: _accepted_lists() == 2)
            await asyncio.to_thread(_in_thread, sync_task)  # the answer taken in: nothing to send
            return first, (cp.local_list_version, set(cp.local_list))

    first, second = run(scenario, command_poll_seconds=0.05)
    assert first == (1, {"04A23B11"})
    assert second == (2, {"04A23B11", "04A23B22"})
    with scope(community=community):
        updates = [c.payload.get("updateType") for c in _lists(charger)]
        assert updates == ["Full", "Differential"]
        state = LocalList.objects.get(charger=charger)
        assert (state.version, state.in_sync, state.last_error) == (2, True, "")
        assert len(_lists(charger)) == 2
