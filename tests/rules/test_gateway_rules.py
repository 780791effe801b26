"""The rules of use in the gateway, over loopback websockets, in both OCPP versions: every
refusal reason answered with its status (1.6 Authorize and StartTransaction, 2.0.1 Authorize and
TransactionEvent Started), recorded with its reason; a change in the portal applied within
seconds; a portal remote start refused by the same evaluation."""

import asyncio
from datetime import date, time, timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone
from django_scopes import scope

from chargers import services as charger_services
from chargers.models import ChargingSession
from ocpp_gateway import access
from rules import services
from rules.models import Mode, Reason, RuleEvent
from tests import builders
from tests.ocpp_gateway.test_gateway import _fast, exchange, raw_client, run  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True)]

UID = "04A23B11"


@pytest.fixture
def card(community, individual):
    return builders.make_card(community, holder=individual, uid=UID)


def _not_today() -> str:
    today = timezone.localtime(timezone.now()).isoweekday()
    return "".join(d for d in "1234567" if d != str(today))


def arrange(reason, community, manager, individual, site, card):
    """Set the community up so that `UID` is refused on the site for `reason`."""
    with scope(community=community):
        if reason == Reason.UNKNOWN_CARD:
            card.delete()
        elif reason == Reason.CARD_BLOCKED:
            charger_services.deactivate_card(card=card, actor=manager)
        elif reason == Reason.CARD_EXPIRED:
            card.expires_on = date(2020, 1, 31)
            card.save()
        elif reason == Reason.NOT_ALLOWED:
            # A group and a user: the gateway builds its snapshot outside any scope.
            group = services.save_group(
                community=community, actor=manager, name="Staff", members=[manager]
            )
            services.set_policy(
                community=community,
                actor=manager,
                mode=Mode.CHOSEN,
                site=site,
                users=[manager],
                groups=[group],
            )
        elif reason == Reason.OUT_OF_SERVICE:
            services.set_policy(community=community, actor=manager, mode=Mode.NOBODY, site=site)
        elif reason == Reason.OUTSIDE_HOURS:
            policy = services.set_policy(
                community=community, actor=manager, mode=Mode.MEMBERS, site=site
            )
            # Windows that in a day or two start at midnight; the whole of today is outside them.
            services.add_window(
                policy=policy, actor=manager, days=_not_today(), start=time(0), end=time(23, 59)
            )
        elif reason == Reason.MONTHLY_LIMIT:
            services.set_limit(
                community=community,
                actor=manager,
                user=individual,
                monthly_kwh=Decimal("5"),
                session_minutes=None,
            )
            ChargingSession.objects.create(
                community=community,
                charger=site.chargers.get(),
                transaction_id="earlier",
                holder=individual,
                state=ChargingSession.State.COMPLETED,
                started_at=timezone.now(),
                energy_wh=Decimal("5000"),
            )


def _now():
    return timezone.now().isoformat()


EXPECTED = {
    # reason: (1.6 status, 2.0.1 status)
    Reason.UNKNOWN_CARD: ("Invalid", "Invalid"),
    Reason.CARD_BLOCKED: ("Blocked", "Blocked"),
    Reason.CARD_EXPIRED: ("Expired", "Expired"),
    Reason.NOT_ALLOWED: ("Blocked", "NotAtThisLocation"),
    Reason.OUT_OF_SERVICE: ("Blocked", "NotAtThisLocation"),
    Reason.OUTSIDE_HOURS: ("Blocked", "NotAtThisTime"),
    Reason.MONTHLY_LIMIT: ("Blocked", "NoCredit"),
}


async def _ask_16(gw, identity):
    ws = await raw_client(gw.url, identity, protocols=["ocpp1.6"])
    authorize = await exchange(ws, [2, "a1", "Authorize", {"idTag": "04:a2:3b:11"}])
    start = await exchange(
        ws,
        [
            2,
            "s1",
            "StartTransaction",
            {"connectorId": 1, "idTag": UID, "meterStart": 0, "timestamp": _now()},
        ],
    )
    await ws.close()
    return authorize[2]["idTagInfo"]["status"], start[2]["idTagInfo"]["status"]


async def _ask_201(gw, identity):
    ws = await raw_client(gw.url, identity, protocols=["ocpp2.0.1"])
    token = {"idToken": UID, "type": "ISO14443"}
    authorize = await exchange(ws, [2, "a1", "Authorize", {"idToken": token}])
    started = await exchange(
        ws,
        [
            2,
            "t1",
            "TransactionEvent",
            {
                "eventType": "Started",
                "timestamp": _now(),
                "triggerReason": "Authorized",
                "seqNo": 0,
                "transactionInfo": {"transactionId": "tx-1"},
                "evse": {"id": 1, "connectorId": 1},
                "idToken": token,
            },
        ],
    )
    await ws.close()
    return authorize[2]["idTokenInfo"]["status"], started[2]["idTokenInfo"]["status"]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("reason", list(EXPECTED))
def test_every_refusal_reason_in_both_versions(
    community, manager, individual, site, charger, card, version, reason
):
    arrange(reason, community, manager, individual, site, card)
    ask = _ask_16 if version == "1.6" else _ask_201
    authorize, start = run(lambda gw: ask(gw, charger.identity))
    expected = EXPECTED[reason][0 if version == "1.6" else 1]
    assert (authorize, start) == (expected, expected)
    with scope(community=community):
        events = RuleEvent.objects.filter(charger=charger).order_by("pk")
        assert [e.reason for e in events] == [reason, reason], [
            (e.action, e.reason) for e in events
        ]
        first, second = events
        assert first.action == "Authorize" and first.evse_id is None and first.uid == UID
        assert second.action == ("StartTransaction" if version == "1.6" else "TransactionEvent")
        assert second.evse_id == 1 and second.kind == RuleEvent.Kind.REFUSED
        if reason != Reason.UNKNOWN_CARD:
            assert second.holder == individual


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_allowed_and_free_charging(community, manager, site, charger, card, version):
    ask = _ask_16 if version == "1.6" else _ask_201
    assert run(lambda gw: ask(gw, charger.identity)) == ("Accepted", "Accepted")
    with scope(community=community):
        card.delete()
        services.set_policy(community=community, actor=manager, mode=Mode.FREE, site=site)
    # Free charging: any card is accepted, nothing is refused.
    assert run(lambda gw: ask(gw, charger.identity)) == ("Accepted", "Accepted")
    with scope(community=community):
        assert not RuleEvent.objects.exists()


def test_a_portal_change_applies_within_seconds(
    community, manager, site, charger, card, monkeypatch
):
    monkeypatch.setattr(access, "STAMP_CHECK_SECONDS", 0.2)

    def close_site():
        try:
            with scope(community=community):
                services.set_policy(community=community, actor=manager, mode=Mode.NOBODY, site=site)
        finally:
            connections.close_all()  # this thread's own connection

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity, protocols=["ocpp1.6"])
        frame = [2, "a1", "Authorize", {"idTag": UID}]
        before = (await exchange(ws, frame))[2]["idTagInfo"]["status"]
        await asyncio.to_thread(close_site)
        cached = (await exchange(ws, frame))[2]["idTagInfo"]["status"]
        await asyncio.sleep(0.3)
        after = (await exchange(ws, frame))[2]["idTagInfo"]["status"]
        await ws.close()
        return before, cached, after

    before, _cached, after = run(scenario)
    assert (before, after) == ("Accepted", "Blocked")


def test_a_card_deactivated_in_the_portal_is_refused_within_seconds(
    community, manager, charger, card, monkeypatch
):
    monkeypatch.setattr(access, "STAMP_CHECK_SECONDS", 0.2)

    def deactivate():
        try:
            with scope(community=community):
                charger_services.deactivate_card(card=card, actor=manager)
        finally:
            connections.close_all()  # this thread's own connection

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity, protocols=["ocpp1.6"])
        frame = [2, "a1", "Authorize", {"idTag": UID}]
        before = (await exchange(ws, frame))[2]["idTagInfo"]["status"]
        await asyncio.to_thread(deactivate)
        await asyncio.sleep(0.3)
        after = (await exchange(ws, frame))[2]["idTagInfo"]["status"]
        await ws.close()
        return before, after

    # The card decision itself is cached 30 s: the stamp drops it.
    assert run(scenario) == ("Accepted", "Blocked")


def test_a_remote_start_is_refused_by_the_same_rules(
    community, manager, individual, site, charger, card
):
    charger.connected, charger.ocpp_version = True, "1.6"
    charger.save()
    outlet = builders.make_connector(charger, connector_id=1, status="Available")
    arrange(Reason.OUTSIDE_HOURS, community, manager, individual, site, card)
    with scope(community=community):
        with pytest.raises(charger_services.ChargerError) as refused:
            charger_services.request_remote_start(connector=outlet, user=individual)
        assert str(Reason.OUTSIDE_HOURS.label) in refused.value.message
        event = RuleEvent.objects.get()
        assert (event.reason, event.action, event.holder) == (
            Reason.OUTSIDE_HOURS,
            "RemoteStart",
            individual,
        )
        assert not charger.commands.exists()


@pytest.mark.parametrize("reason", [Reason.OUT_OF_SERVICE, Reason.UNKNOWN_CARD])
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_charge_started_offline_is_accepted_and_flagged(
    community, manager, individual, site, charger, card, version, reason
):
    arrange(reason, community, manager, individual, site, card)
    two_hours_ago = (timezone.now() - timedelta(hours=2)).isoformat()

    async def scenario(gw):
        if version == "1.6":
            ws = await raw_client(gw.url, charger.identity, protocols=["ocpp1.6"])
            start = {"connectorId": 1, "idTag": UID, "meterStart": 0, "timestamp": two_hours_ago}
            answer = await exchange(ws, [2, "s1", "StartTransaction", start])
            status = answer[2]["idTagInfo"]["status"]
        else:
            ws = await raw_client(gw.url, charger.identity, protocols=["ocpp2.0.1"])
            event = {
                "eventType": "Started",
                "timestamp": two_hours_ago,
                "triggerReason": "Authorized",
                "seqNo": 0,
                "offline": True,
                "transactionInfo": {"transactionId": "off-1"},
                "evse": {"id": 1, "connectorId": 1},
                "idToken": {"idToken": UID, "type": "ISO14443"},
            }
            answer = await exchange(ws, [2, "t1", "TransactionEvent", event])
            status = answer[2]["idTokenInfo"]["status"]
        await ws.close()
        return status

    assert run(scenario) == "Accepted"
    with scope(community=community):
        session = ChargingSession.objects.get(charger=charger)  # recorded, never lost
        assert session.offline and session.id_tag == UID
        assert session.holder == (None if reason == Reason.UNKNOWN_CARD else individual)
        event = RuleEvent.objects.get()
        assert (event.kind, event.reason) == (RuleEvent.Kind.OFFLINE, reason)


def test_a_group_lets_its_members_in_at_the_charger(community, manager, individual, site, charger):
    with scope(community=community):
        group = services.save_group(
            community=community, actor=manager, name="Residents", members=[individual]
        )
        services.set_policy(
            community=community, actor=manager, mode=Mode.CHOSEN, site=site, groups=[group]
        )
        builders.make_card(community, holder=individual, uid=UID)
    assert run(lambda gw: _ask_16(gw, charger.identity)) == ("Accepted", "Accepted")


def test_meter_updates_of_an_allowed_session_are_not_refused_later(
    community, manager, individual, site, charger, card
):
    """2.0.1: the rules answer a start (or an authorization after plugging in); a periodic
    update carrying the token gets the card's status, so a session allowed at 18:55 is not
    cut by its station at 19:00 because of an answer."""
    arrange(Reason.OUT_OF_SERVICE, community, manager, individual, site, card)

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity, protocols=["ocpp2.0.1"])
        update = {
            "eventType": "Updated",
            "timestamp": _now(),
            "triggerReason": "MeterValuePeriodic",
            "seqNo": 3,
            "transactionInfo": {"transactionId": "tx-9"},
            "idToken": {"idToken": UID, "type": "ISO14443"},
        }
        answer = await exchange(ws, [2, "u1", "TransactionEvent", update])
        await ws.close()
        return answer[2]["idTokenInfo"]["status"]

    assert run(scenario) == "Accepted"
    with scope(community=community):
        assert not RuleEvent.objects.exists()
