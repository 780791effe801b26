"""chargers.events: persisting gateway events idempotently, whatever the order."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from chargers import events as ev
from chargers.models import (
    AuthorizationStatus,
    Charger,
    ChargerCommand,
    ChargingSession,
    Connector,
    MeterSample,
    OcppMessage,
    UnknownCharger,
    card_decision,
    normalize_card_uid,
)
from chargers.tasks import process_events as process_events_task
from communities.models import Membership

from .. import builders

# The gateway and the worker enter their own scopes (scopes_disabled for cross-tenant lookups,
# the charger's community for its writes); the test body reads inside the community's scope.
pytestmark = pytest.mark.community_scope

T0 = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)


def at(minutes=0.0, seconds=0.0) -> str:
    return (T0 + timedelta(minutes=minutes, seconds=seconds)).isoformat()


def event(charger, kind, payload=None, received=None):
    return {
        "identity": charger.identity if hasattr(charger, "identity") else charger,
        "kind": kind,
        "payload": payload or {},
        "received_at": received or at(),
    }


def sample(value, minutes, unit="Wh", context="Sample.Periodic", measurand=None):
    s = {"timestamp": at(minutes), "value": str(value), "unit": unit, "context": context}
    if measurand:
        s["measurand"] = measurand
    return s


def tx(charger, kind, tid="1001", minutes=0.0, **payload):
    body = {
        "event": kind,
        "transaction_id": tid,
        "evse_id": 1,
        "connector_id": 1,
        "id_tag": None,
        "timestamp": at(minutes),
        "meter_wh": None,
        "reason": "",
        "seq_no": None,
        "offline": False,
        "samples": [],
    }
    body.update(payload)
    return event(charger, "transaction", body, received=at(minutes, 1))


@pytest.fixture
def driver_card(community, individual):
    # Cards are stored normalised by the portal's service (chargers.services.add_card).
    return builders.make_card(community, holder=individual, uid=normalize_card_uid("04:a2:3b:11"))


def one_session(charger) -> ChargingSession:
    sessions = list(ChargingSession.objects.filter(charger=charger))
    assert len(sessions) == 1
    return sessions[0]


def whole_16_session(charger, card_uid="04A23B11"):
    return [
        tx(charger, "started", minutes=0, id_tag=card_uid, meter_wh=12000),
        event(
            charger,
            "meter_values",
            {
                "transaction_id": "1001",
                "evse_id": 1,
                "connector_id": 1,
                "samples": [sample(13500, 10)],
            },
            received=at(10, 1),
        ),
        tx(
            charger,
            "ended",
            minutes=30,
            meter_wh=19404,
            reason="Local",
            samples=[sample(19404, 30, context="Transaction.End")],
        ),
    ]


@pytest.mark.django_db
def test_whole_session_energy_and_cost_at_price_in_force(charger, driver_card):
    ev.process_events(whole_16_session(charger))
    s = one_session(charger)
    assert s.state == ChargingSession.State.COMPLETED
    assert s.energy_wh == Decimal("7404.0")
    assert s.price_per_kwh == Decimal("0.2516")
    # 7.404 kWh × 0.2516 = 1.8628464 → 1.86
    assert s.cost == Decimal("1.86")
    assert s.card == driver_card and s.holder == driver_card.holder
    assert s.started_at == T0 and s.stopped_at == T0 + timedelta(minutes=30)
    assert s.connector.connector_id == 1
    assert MeterSample.objects.filter(session=s).count() == 2


@pytest.mark.django_db
def test_same_batch_twice_changes_nothing(charger, driver_card):
    batch = whole_16_session(charger) + [
        event(
            charger,
            "message",
            {
                "direction": "in",
                "message_type": 2,
                "unique_id": "u1",
                "action": "Heartbeat",
                "payload": {},
            },
        ),
        event(charger, "refused", {"reason": "bad_password", "remote_address": "10.0.0.9"}),
    ]
    ev.process_events(batch)
    before = (
        list(ChargingSession.objects.values()),
        MeterSample.objects.count(),
        OcppMessage.objects.count(),
        list(UnknownCharger.objects.values("attempts")),
    )
    ev.process_events(batch)
    after = (
        list(ChargingSession.objects.values()),
        MeterSample.objects.count(),
        OcppMessage.objects.count(),
        list(UnknownCharger.objects.values("attempts")),
    )
    for b, a in zip(before[0], after[0], strict=True):
        b.pop("updated_at"), a.pop("updated_at")
    assert before == after
    assert after[3] == [{"attempts": 1}]


@pytest.mark.django_db
def test_stop_processed_before_start_ends_in_one_correct_session(charger, driver_card):
    start, meter, stop = whole_16_session(charger)
    ev.process_events([stop])
    ev.process_events([meter])
    ev.process_events([start])
    s = one_session(charger)
    assert s.state == ChargingSession.State.COMPLETED
    assert s.energy_wh == Decimal("7404.0")
    assert s.cost == Decimal("1.86")
    assert s.started_at == T0


@pytest.mark.django_db
def test_replayed_stop_changes_nothing(charger, driver_card):
    batch = whole_16_session(charger)
    ev.process_events(batch)
    replay = tx(charger, "ended", minutes=45, meter_wh=25000, reason="Other")
    ev.process_events([replay])
    s = one_session(charger)
    assert s.meter_stop_wh == Decimal("19404.0")
    assert s.stopped_at == T0 + timedelta(minutes=30)
    assert s.stop_reason == "Local"


def v201(charger, kind, seq, minutes, samples=(), **extra):
    return tx(
        charger, kind, tid="b7f1-uuid", minutes=minutes, seq_no=seq, samples=list(samples), **extra
    )


@pytest.mark.django_db
def test_201_seqno_replays_and_ended_replay(charger, driver_card):
    started = v201(
        charger, "started", 0, 0, [sample(5.0, 0, "kWh", "Transaction.Begin")], id_tag="04a23b11"
    )
    upd1 = v201(charger, "updated", 1, 10, [sample(6.5, 10, "kWh")])
    upd2 = v201(charger, "updated", 2, 20, [sample(7.25, 20, "kWh")])
    ended = v201(
        charger,
        "ended",
        3,
        30,
        [sample(8.0, 30, "kWh", "Transaction.End")],
        reason="EVDisconnected",
    )
    ev.process_events([started, upd1, upd2])
    s = one_session(charger)
    assert s.state == ChargingSession.State.ACTIVE
    assert s.meter_start_wh == Decimal("5000.0")
    assert s.meter_last_wh == Decimal("7250.0")
    assert s.energy_wh == Decimal("2250.0")  # live energy of a session in progress
    # A replayed older update with a different (stale) value is ignored.
    stale = v201(charger, "updated", 1, 12, [sample(6.9, 12, "kWh")])
    ev.process_events([stale])
    assert one_session(charger).meter_last_wh == Decimal("7250.0")
    ev.process_events([ended])
    ev.process_events([ended, upd2])
    s = one_session(charger)
    assert s.state == ChargingSession.State.COMPLETED
    assert s.energy_wh == Decimal("3000.0")
    assert s.last_seq_no == 3
    assert s.cost == Decimal("0.75")  # 3 kWh × 0.2516 = 0.7548
    assert s.card == driver_card
    # Samples are facts with their own time: the late one (seqNo 1 again, 12 min) is kept.
    assert MeterSample.objects.filter(session=s).count() == 5
    assert set(MeterSample.objects.values_list("unit", flat=True)) == {"Wh"}


@pytest.mark.django_db
def test_price_fixed_at_start_time(community, charger, driver_card):
    builders.make_price(community, price="0.4000", valid_from="2025-03-11")
    ev.process_events(
        [
            tx(charger, "started", minutes=0, id_tag="04A23B11", meter_wh=0),
            # Stops the next day, after the new price came into force.
            tx(charger, "ended", minutes=24 * 60 + 5, meter_wh=10000),
        ]
    )
    s = one_session(charger)
    assert s.price_per_kwh == Decimal("0.2516")
    assert s.cost == Decimal("2.52")  # 10 kWh × 0.2516 = 2.516 → half-up 2.52


@pytest.mark.django_db
def test_offline_transaction_keeps_its_own_timestamps(charger, driver_card):
    started = v201(
        charger,
        "started",
        0,
        0,
        offline=True,
        id_tag="04A23B11",
        meter_wh=None,
        samples=[sample(100, 0, context="Transaction.Begin")],
    )
    ended = v201(
        charger, "ended", 1, 50, offline=True, samples=[sample(1100, 50, context="Transaction.End")]
    )
    # Replayed hours later: received_at is much later than the charger's timestamps.
    for e in (started, ended):
        e["received_at"] = (T0 + timedelta(hours=6)).isoformat()
    ev.process_events([started, ended])
    s = one_session(charger)
    assert s.offline is True
    assert s.started_at == T0 and s.stopped_at == T0 + timedelta(minutes=50)
    assert s.energy_wh == Decimal("1000.0")


@pytest.mark.django_db
def test_status_creates_outlets_orders_by_time_and_skips_charger_itself(charger):
    def status(cid, value, seconds, evse=None):
        return event(
            charger,
            "status",
            {
                "evse_id": cid if evse is None else evse,
                "connector_id": cid,
                "status": value,
                "error_code": "NoError",
                "timestamp": None,
            },
            received=at(0, seconds),
        )

    ev.process_events(
        [status(0, "Available", 1), status(1, "Available", 1), status(2, "Charging", 2)]
    )
    assert sorted(Connector.objects.values_list("connector_id", "status")) == [
        (1, "Available"),
        (2, "Charging"),
    ]
    ev.process_events([status(1, "Charging", 10)])
    ev.process_events([status(1, "Faulted", 5)])  # older than the stored one: ignored
    assert Connector.objects.get(connector_id=1).status == "Charging"
    # 2.0.1 numbering: evse 2, connector 1.
    ev.process_events([status(1, "Occupied", 20, evse=2)])
    assert Connector.objects.filter(evse_id=2, connector_id=1, status="Occupied").exists()


@pytest.mark.django_db
def test_card_decisions_normalise_and_block_removed_members(community, individual, driver_card):
    assert card_decision(community.pk, "04-A2-3B-11")["status"] == AuthorizationStatus.ACCEPTED
    assert card_decision(community.pk, "04 a2 3b 11")["card_id"] == driver_card.pk
    assert card_decision(community.pk, "FFFF")["status"] == AuthorizationStatus.INVALID
    Membership.objects.filter(user=individual).update(state=Membership.State.LEFT)
    assert card_decision(community.pk, "04A23B11")["status"] == AuthorizationStatus.BLOCKED
    Membership.objects.filter(user=individual).update(state=Membership.State.ACTIVE)
    driver_card.active = False
    driver_card.save()
    assert card_decision(community.pk, "04A23B11")["status"] == AuthorizationStatus.BLOCKED
    other = builders.make_community()
    assert card_decision(other.pk, "04A23B11")["status"] == AuthorizationStatus.INVALID
    # Stored in its one spelling: the typed and the scanned forms are the same card.
    demo = builders.make_card(community, holder=individual, uid="DEMO-CARD-01")
    assert demo.uid == "DEMOCARD01"
    assert card_decision(community.pk, "demo-card-01")["card_id"] == demo.pk
    assert card_decision(community.pk, "DEMOCARD01")["card_id"] == demo.pk


@pytest.mark.django_db
def test_connection_events_out_of_order_and_boot(charger):
    boot = event(
        charger,
        "boot",
        {
            "vendor": "Spark",
            "model": "S1",
            "serial": "SN1",
            "firmware": "1.2.3",
            "ocpp_version": "1.6",
            "heartbeat_interval": 120,
        },
        received=at(0, 1),
    )
    connected = event(charger, "connected", {"ocpp_version": "1.6"}, received=at(0, 0))
    disconnected = event(charger, "disconnected", {"code": 1006}, received=at(5))
    ev.process_events([disconnected])
    ev.process_events([connected, boot])  # older than the disconnection: stays disconnected
    c = Charger.objects.get(pk=charger.pk)
    assert c.connected is False
    assert (c.reported_vendor, c.firmware_version, c.heartbeat_interval) == ("Spark", "1.2.3", 120)
    assert c.last_seen == T0 + timedelta(seconds=1)
    ev.process_events([event(charger, "heartbeat", received=at(6))])
    c.refresh_from_db()
    assert c.connected is True and c.last_seen == T0 + timedelta(minutes=6)


@pytest.mark.django_db
def test_sweep_offline_after_two_heartbeat_intervals(charger):
    Charger.objects.filter(pk=charger.pk).update(
        connected=True, heartbeat_interval=300, last_seen=T0
    )
    with time_machine.travel(T0 + timedelta(seconds=500), tick=False):
        assert ev.sweep_offline() == 0
    with time_machine.travel(T0 + timedelta(seconds=541), tick=False):
        assert ev.sweep_offline() == 1
    charger.refresh_from_db()
    assert charger.connected is False
    # A heartbeat received after the sweep brings it back.
    ev.process_events([event(charger, "heartbeat", received=at(10))])
    charger.refresh_from_db()
    assert charger.connected is True


@pytest.mark.django_db
def test_commands_only_move_forward_and_configuration_merges(charger):
    uid = "2f1e8f7e-0000-4000-8000-000000000001"

    def cmd(status, response=None, seconds=0):
        return event(
            charger,
            "command",
            {
                "uid": uid,
                "action": "ChangeConfiguration",
                "payload": {"key": "HeartbeatInterval"},
                "status": status,
                "response": response,
            },
            received=at(0, seconds),
        )

    ev.process_events([cmd("sent", seconds=1), cmd("accepted", {"status": "Accepted"}, 2)])
    ev.process_events([cmd("pending")])
    c = ChargerCommand.objects.get(uid=uid)
    assert c.status == "accepted" and c.response == {"status": "Accepted"}
    ev.process_events(
        [
            event(charger, "configuration", {"values": {"A": "1"}}),
            event(charger, "configuration", {"values": {"B": "2"}}),
            event(charger, "configured", {}),
        ]
    )
    charger.refresh_from_db()
    assert charger.configuration == {"A": "1", "B": "2"} and charger.configured_at == T0


@pytest.mark.django_db
def test_refusals_are_counted_per_identity_and_reason(db):
    batch = [
        event(
            "NOPE-1",
            "refused",
            {"reason": "unknown", "remote_address": "1.2.3.4"},
            received=at(0, i),
        )
        for i in range(3)
    ]
    ev.process_events(batch)
    ev.process_events(batch + [event("NOPE-1", "refused", {"reason": "unknown"}, received=at(1))])
    row = UnknownCharger.objects.get(identity="NOPE-1")
    assert row.attempts == 4
    assert row.first_seen == T0 and row.last_seen == T0 + timedelta(minutes=1)


@pytest.mark.django_db
def test_purge_message_log(charger):
    ev.process_events(
        [
            event(
                charger,
                "message",
                {
                    "direction": "in",
                    "message_type": 2,
                    "unique_id": "x",
                    "action": "Heartbeat",
                    "payload": {},
                },
            )
        ]
    )
    assert ev.purge_message_log(30, now=T0 + timedelta(days=29)) == 0
    assert ev.purge_message_log(30, now=T0 + timedelta(days=31)) == 1


@pytest.mark.django_db
def test_task_runs_the_service(charger, driver_card):
    result = process_events_task.apply_async(args=[whole_16_session(charger)]).get()
    assert result["chargers"] == 1
    assert one_session(charger).cost == Decimal("1.86")


@pytest.mark.django_db
def test_new_session_without_start_reading_is_inserted_once_with_its_energy(charger, driver_card):
    """A session new in a batch is written by one INSERT with its figures (no UPDATE of the
    row just inserted); without a start reading its first register sample stands in, whether
    that sample comes in the same batch or a later one."""
    from django.db import connection

    started = v201(charger, "started", 0, 0, id_tag="04a23b11")
    # Out of order inside the batch: the 10-minute sample is the first register reading.
    upd2 = v201(charger, "updated", 2, 20, [sample(7.25, 20, "kWh")])
    upd1 = v201(
        charger,
        "updated",
        1,
        10,
        [sample(6.5, 10, "kWh"), sample(9, 5, "A", measurand="Current.Import")],
    )
    statements: list[str] = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        ev.process_events([started, upd2, upd1])
    writes = [s.split()[0:3] for s in statements if "chargers_chargingsession" in s.split("(")[0]]
    assert not any(w[0] == "UPDATE" for w in writes), writes
    s = one_session(charger)
    assert s.meter_start_wh is None  # a late Started with a reading would still win
    assert s.meter_last_wh == Decimal("7250.0")
    assert s.energy_wh == Decimal("750.0")
    assert s.cost == Decimal("0.19")  # 0.75 kWh × 0.2516
    assert s.card == driver_card and s.holder == driver_card.holder
    # Another session, whose first reading arrives in a later batch: read from the database.
    ev.process_events([tx(charger, "started", tid="b8", minutes=30, id_tag="04a23b11")])
    ev.process_events(
        [tx(charger, "updated", tid="b8", minutes=40, samples=[sample(10, 40, "kWh")])]
    )
    ev.process_events(
        [tx(charger, "updated", tid="b8", minutes=50, samples=[sample(10.5, 50, "kWh")])]
    )
    assert ChargingSession.objects.get(transaction_id="b8").energy_wh == Decimal("500.0")
