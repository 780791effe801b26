"""Free charging ("free for anyone, no card needed"): which chargers are told to stop asking for
cards and how (2.0.1 `AuthCtrlr.Enabled`, 1.6 vendor free-vend keys, otherwise any idTag accepted
by the gateway), undone when the rule changes back; sessions started on a free outlet recorded
free at price 0 in both OCPP versions (a 2.0.1 station without authorization sends no token)."""

from datetime import time
from decimal import Decimal

import pytest
from django.utils import timezone
from django_scopes import scope

from chargers.models import ChargerCommand, ChargingSession, Vendor
from rules import services
from rules.evaluation import build_snapshot, free_vend
from rules.locallists import FREE_VEND_ID_TAG, FREE_VEND_KEYS_16, sync_local_lists
from rules.models import LocalList, Mode
from tests import builders
from tests.ocpp_gateway.test_gateway import _fast, exchange, raw_client, run  # noqa: F401

FREE_VEND_KEYS = {key for pair in FREE_VEND_KEYS_16 for key in pair}


def _connected(charger, version="1.6", outlets=(1,)):
    charger.connected, charger.ocpp_version = True, version
    charger.save()
    return [builders.make_connector(charger, connector_id=n) for n in outlets]


def _free_commands(charger):
    """The free-vend settings sent to the charger, in order: (key, value)."""
    found = []
    for c in ChargerCommand.objects.filter(charger=charger).order_by("pk"):
        if c.action == "ChangeConfiguration" and c.payload["key"] in FREE_VEND_KEYS:
            found.append((c.payload["key"], c.payload["value"]))
        elif c.action == "SetVariables":
            for item in c.payload["setVariableData"]:
                if (item["component"]["name"], item["variable"]["name"]) == (
                    "AuthCtrlr",
                    "Enabled",
                ):
                    found.append(("AuthCtrlr/Enabled", item["attributeValue"]))
    return found


@pytest.mark.community_scope
def test_only_a_charger_free_on_every_outlet_at_all_times_is_free_vend(
    community, manager, site, charger
):
    first, second = _connected(charger, outlets=(1, 2))
    services.set_policy(community=community, actor=manager, mode=Mode.FREE, site=site)
    assert free_vend(build_snapshot(community.pk), charger.pk)
    # One outlet with a rule of its own: the charger must keep asking.
    services.set_policy(community=community, actor=manager, mode=Mode.MEMBERS, connector=second)
    assert not free_vend(build_snapshot(community.pk), charger.pk)
    services.set_policy(community=community, actor=manager, mode=Mode.FREE, connector=second)
    assert free_vend(build_snapshot(community.pk), charger.pk)
    # Free during opening hours only: outside them a start must still be refused.
    outlet_policy = services.set_policy(
        community=community, actor=manager, mode=Mode.FREE, connector=first
    )
    services.add_window(
        policy=outlet_policy, actor=manager, days="12345", start=time(8), end=time(19)
    )
    assert not free_vend(build_snapshot(community.pk), charger.pk)


@pytest.mark.community_scope
def test_201_station_stops_asking_for_cards_and_asks_again_when_the_rule_changes_back(
    community, manager, site, charger
):
    _connected(charger, "2.0.1")
    sync_local_lists(community=community)
    assert _free_commands(charger) == []  # members only: nothing to change
    services.set_policy(community=community, actor=manager, mode=Mode.FREE, site=site)
    sync_local_lists(community=community)
    sync_local_lists(community=community)  # once per change
    assert _free_commands(charger) == [("AuthCtrlr/Enabled", "false")]
    assert LocalList.objects.get(charger=charger).free_vend == "charger"
    services.set_policy(community=community, actor=manager, mode=Mode.MEMBERS, site=site)
    sync_local_lists(community=community)
    assert _free_commands(charger) == [
        ("AuthCtrlr/Enabled", "false"),
        ("AuthCtrlr/Enabled", "true"),
    ]
    assert LocalList.objects.get(charger=charger).free_vend == ""


@pytest.mark.community_scope
def test_16_free_vend_keys_of_known_vendors_else_the_gateway_accepts_any_card(
    community, manager, site
):
    spark = builders.make_charger(community, site=site, vendor=Vendor.SPARK1)
    # Not a known vendor, but it reported the key in its configuration.
    reporting = builders.make_charger(
        community, site=site, configuration={"FreeVendEnabled": "false", "HeartbeatInterval": "60"}
    )
    # Zaptec (Go / Pro, native OCPP): the keys its documentation names.
    zaptec = builders.make_charger(community, site=site, vendor=Vendor.ZAPTEC)
    # An Easee reports its lower-case keys (its idTag key too).
    easee = builders.make_charger(
        community, site=site, configuration={"freecharging": "False", "rfidtagfreecharging": ""}
    )
    # Volt Time documents no free-vend key.
    other = builders.make_charger(community, site=site, vendor=Vendor.VOLTTIME)
    for c in (spark, reporting, zaptec, easee, other):
        _connected(c)
    services.set_policy(community=community, actor=manager, mode=Mode.FREE, site=site)
    sync_local_lists(community=community)
    assert _free_commands(spark) == [
        ("FreeVendIdTag", FREE_VEND_ID_TAG),
        ("FreeVendEnabled", "true"),
    ]
    assert _free_commands(reporting) == [("FreeVendEnabled", "true")]
    assert _free_commands(zaptec) == [
        ("FreeChargingIdTag", FREE_VEND_ID_TAG),
        ("FreeCharging", "true"),
    ]
    assert _free_commands(easee) == [
        ("rfidtagfreecharging", FREE_VEND_ID_TAG),
        ("freecharging", "true"),
    ]
    assert _free_commands(other) == []
    states = {s.charger_id: s.free_vend for s in LocalList.objects.all()}
    assert states == {
        spark.pk: "charger",
        reporting.pk: "charger",
        zaptec.pk: "charger",
        easee.pk: "charger",
        other.pk: "gateway",
    }

    # A charger that refuses the setting keeps asking: the gateway accepts every card.
    refused = ChargerCommand.objects.filter(charger=reporting, action="ChangeConfiguration")
    refused.update(status=ChargerCommand.Status.REJECTED, response={"status": "Rejected"})
    sync_local_lists(community=community)
    assert LocalList.objects.get(charger=reporting).free_vend == "gateway"

    services.set_policy(community=community, actor=manager, mode=Mode.MEMBERS, site=site)
    sync_local_lists(community=community)
    assert _free_commands(spark)[-1] == ("FreeVendEnabled", "false")
    assert _free_commands(zaptec)[-1] == ("FreeCharging", "false")
    assert _free_commands(reporting) == [("FreeVendEnabled", "true")]  # nothing to undo
    assert _free_commands(other) == []
    assert set(LocalList.objects.values_list("free_vend", flat=True)) == {""}


# --- sessions on a free outlet, through the gateway ------------------------------------------


def _now():
    return timezone.now().isoformat()


async def _free_16(gw, identity):
    ws = await raw_client(gw.url, identity, protocols=["ocpp1.6"])
    start = await exchange(
        ws,
        [
            2,
            "s1",
            "StartTransaction",
            {"connectorId": 1, "idTag": FREE_VEND_ID_TAG, "meterStart": 1000, "timestamp": _now()},
        ],
    )
    tx = start[2]["transactionId"]
    stop = [
        2,
        "s2",
        "StopTransaction",
        {"transactionId": tx, "meterStop": 9000, "timestamp": _now(), "reason": "Local"},
    ]
    await exchange(ws, stop)
    await ws.close()
    return start[2]["idTagInfo"]["status"]


async def _no_token_201(gw, identity, token):
    ws = await raw_client(gw.url, identity, protocols=["ocpp2.0.1"])
    started = {
        "eventType": "Started",
        "timestamp": _now(),
        "triggerReason": "CablePluggedIn",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "free-1"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": _now(),
                "sampledValue": [{"value": 1000, "context": "Transaction.Begin"}],
            }
        ],
    }
    if token is not None:
        started["idToken"] = token
    answer = await exchange(ws, [2, "t1", "TransactionEvent", started])
    ended = {
        "eventType": "Ended",
        "timestamp": _now(),
        "triggerReason": "EVCommunicationLost",
        "seqNo": 1,
        "transactionInfo": {"transactionId": "free-1", "stoppedReason": "EVDisconnected"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [
            {"timestamp": _now(), "sampledValue": [{"value": 9000, "context": "Transaction.End"}]}
        ],
    }
    await exchange(ws, [2, "t2", "TransactionEvent", ended])
    await ws.close()
    return answer[2]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "version, token",
    [
        ("1.6", None),
        ("2.0.1", None),  # AuthCtrlr.Enabled false: no idToken at all
        ("2.0.1", {"idToken": "", "type": "NoAuthorization"}),
        ("2.0.1", {"idToken": "ANYCARD99", "type": "ISO14443"}),  # an unknown card
    ],
)
def test_a_session_on_a_free_outlet_is_recorded_free_at_no_cost(
    community, manager, site, charger, version, token
):
    builders.make_connector(charger, 1)
    with scope(community=community):
        services.set_policy(community=community, actor=manager, mode=Mode.FREE, site=site)
    if version == "1.6":
        assert run(lambda gw: _free_16(gw, charger.identity)) == "Accepted"
    else:
        answer = run(lambda gw: _no_token_201(gw, charger.identity, token))
        if token and token["idToken"]:
            assert answer == {"idTokenInfo": {"status": "Accepted"}}
    with scope(community=community):
        s = ChargingSession.objects.get(charger=charger)
        assert s.free and s.state == ChargingSession.State.COMPLETED
        assert s.energy_wh == Decimal("8000.0")
        assert s.price_per_kwh == 0 and s.cost == 0


@pytest.mark.django_db(transaction=True)
def test_a_session_without_token_on_a_paying_outlet_is_priced(community, charger):
    builders.make_connector(charger, 1)
    run(lambda gw: _no_token_201(gw, charger.identity, None))
    with scope(community=community):
        s = ChargingSession.objects.get(charger=charger)
        assert not s.free and s.price_per_kwh > 0 and s.cost > 0


@pytest.mark.community_scope
def test_free_sessions_show_as_free_and_cost_nothing_on_notes(
    client, community, manager, individual, charger
):
    from billing.notes import drivers_of_month

    connector = builders.make_connector(charger, 1)
    now = timezone.now()

    def session(tx, holder, free):
        ChargingSession.objects.create(
            community=community,
            charger=charger,
            connector=connector,
            transaction_id=tx,
            holder=holder,
            state=ChargingSession.State.COMPLETED,
            started_at=now,
            stopped_at=now,
            energy_wh=Decimal("5000"),
            price_per_kwh=Decimal(0) if free else Decimal("0.2"),
            cost=Decimal(0) if free else Decimal("1.00"),
            free=free,
        )

    session("f1", individual, True)
    session("p1", individual, False)
    session("f2", manager, True)  # only free charging: no note for the manager
    local = timezone.localtime(now, community.tz)
    (month,) = drivers_of_month(community, local.year, local.month).values()
    assert month.holder == individual and month.amount == Decimal("1.00")
    assert [line["free"] for line in month.lines] == [True, False]
    client.force_login(manager)
    page = client.get("/c/tilleuls/sessions/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Free charging: not billed" in page


@pytest.mark.community_scope
def test_a_free_session_does_not_make_the_price_in_force_history(community, charger):
    from billing.models import Price
    from billing.prices import price_used

    price = Price.objects.order_by("valid_from").first() or builders.make_price(community)
    session = ChargingSession.objects.create(
        community=community,
        charger=charger,
        transaction_id="f1",
        state=ChargingSession.State.COMPLETED,
        started_at=timezone.now(),
        price_per_kwh=Decimal(0),
        free=True,
    )
    assert not price_used(price)  # still correctable: nobody paid at that price
    session.free, session.price_per_kwh = False, price.price_per_kwh
    session.save()
    assert price_used(price)
