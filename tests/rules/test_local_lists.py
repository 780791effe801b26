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
from chargers.models import ChargerCommand
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
            from chargers.models import Charger

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
