"""Forwarding over loopback: a real gateway in-process, a simulated charger, and a third-party
operator's central system written with the `ocpp` library (`operator_csms.Operator`), in the
Monitoring and Billing roles, in 1.6 and 2.0.1; the operator going away and coming back; a
gateway restarted with a non-empty buffer."""

import asyncio
import sqlite3

import pytest
from django.utils import timezone

from chargers.models import ChargerCommand, ChargingSession, OcppMessage
from forwarding.models import ForwardedFrame, OperatorConnection
from ocpp_gateway import relaybuffer
from ocpp_gateway.batcher import EventBatcher
from ocpp_gateway.decisions import Decisions
from ocpp_gateway.relaybuffer import Buffer, Item
from ocpp_gateway.server import Gateway
from simulator.fleet import connect_charger

from .. import builders
from ..e2e.processes import free_port
from ..ocpp_gateway.test_command_bus import configured
from ..ocpp_gateway.test_gateway import redis_client, run, until
from ..ocpp_gateway.test_remote_charging import until_db
from .operator_csms import Operator, make_operator

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]

TRANSACTION = ("StartTransaction", "StopTransaction", "TransactionEvent")


@pytest.fixture(autouse=True)
def _fast(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.GATEWAY_HEARTBEAT_INTERVAL = 120
    settings.FORWARDING_ANSWER_TIMEOUT = 3.0
    settings.FORWARDING_REFRESH_SECONDS = 0.1
    settings.FORWARDING_RECONNECT_MAX_SECONDS = 0.3
    settings.GATEWAY_INSTANCE_ID = "gw-forwarding-test"
    settings.FORWARDING_ALLOW_PRIVATE_HOSTS = True  # the operator runs on loopback


@pytest.fixture(autouse=True)
def _join_flag_restored():
    """Two gateways in one process run eager tasks in two batcher threads at once; celery's
    "inside a task" flag is process-wide and can be left set by their interleaving, which
    would make a later test's `.get()` refuse. Restored after each test."""
    from celery.result import allow_join_result

    with allow_join_result():
        yield


@pytest.fixture
def card(community, individual):
    return builders.make_card(community, holder=individual, uid="04A23B11")


async def upstream_connected(gw, identity, role="billing"):
    """Until the gateway's upstream of `identity` in `role` is connected."""

    def connected():
        cp = gw.connections.get(identity)
        relay = cp.upstream if cp is not None else None
        return relay is not None and any(
            u.connected and u.row["role"] == role for u in relay.upstreams.values()
        )

    await until(connected)


def charger_calls(charger):
    """The unique ids of the CALLs the charger sent, in order (Sparklin's own log)."""
    return list(
        OcppMessage.objects.filter(charger=charger, direction="in", message_type=2)
        .order_by("at", "id")
        .values_list("unique_id", "action")
    )


def test_monitoring_operator_gets_every_frame_and_only_read_only_calls(charger, card):
    settled = configured(charger, "1.6")

    async def scenario(gw):
        # The operator refuses any other credentials: the stored (encrypted) password is sent.
        async with Operator(password="s3cret") as op:
            operator = await until_db(lambda: make_operator(charger, op.url, password="s3cret"))
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, "1.6", configuration=settled
            ) as cp:
                await cp.boot()
                await cp.status(1, "Available")
                await asyncio.wait_for(op.connected.wait(), 5)
                session = await cp.charge(card.uid, energy_wh=5000)
                await until(lambda: len(op.calls("StatusNotification")) >= 5)
                upstream = op.connections[charger.identity]
                from ocpp.v16 import call as call16

                refused = await upstream.call(
                    call16.RemoteStopTransaction(transaction_id=int(session["transaction_id"]))
                )
                read = await upstream.call(call16.GetConfiguration(key=["HeartbeatInterval"]))
                changed = await upstream.call(
                    call16.ChangeConfiguration(key="HeartbeatInterval", value="1")
                )
                await gw.batcher.sync()
                await until_db(lambda: len(op.calls()) >= len(charger_calls(charger)))
                return operator, session, refused, read, changed, op

    operator, session, refused, read, changed, op = run(scenario)
    assert len(op.calls("BootNotification")) == 1
    # Every CALL the charger sent reached the operator, in order, with its message id.
    relayed = [(f[1], f[2]) for f in op.calls()]
    assert relayed == charger_calls(charger)
    import base64

    expected = base64.b64encode(f"{charger.identity}:s3cret".encode()).decode()
    assert set(op.auth_seen) == {f"Basic {expected}"}  # the decrypted password, every time
    # Its answers were ignored: Sparklin's transaction id, Sparklin's session.
    recorded = ChargingSession.objects.get(charger=charger)
    assert recorded.transaction_id == session["transaction_id"] and recorded.state == "completed"
    assert recorded.energy_wh == 5000
    # Monitoring may read, never stop a transaction nor change the configuration.
    assert refused is None and read.configuration_key[0]["key"] == "HeartbeatInterval"
    assert changed is None
    errors = ForwardedFrame.objects.filter(operator=operator, message_type=4)
    assert sorted(errors.values_list("action", flat=True)) == [
        "ChangeConfiguration",
        "RemoteStopTransaction",
    ]
    assert all(e.payload["errorCode"] == "SecurityError" for e in errors)
    relayed_command = ChargerCommand.objects.get(
        action="GetConfiguration", payload__key=["HeartbeatInterval"]
    )
    assert relayed_command.status == "accepted" and not relayed_command.from_portal
    assert not ChargerCommand.objects.filter(
        action__in=["ChangeConfiguration", "RemoteStopTransaction"],
        payload__key="HeartbeatInterval",
    ).exists()
    state = OperatorConnection.objects.get(pk=operator.pk)
    assert state.last_message_at is not None and state.gateway != ""
    assert ForwardedFrame.objects.filter(
        operator=operator, direction="up", action="StartTransaction"
    ).exists()


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_billing_operator_decides_cards_and_1_6_transaction_ids(charger, card, community, version):
    settled = configured(charger, version)
    builders.make_card(community, uid="BADCARD1")  # known to Sparklin, refused by the operator

    async def scenario(gw):
        async with Operator(first_transaction_id=4242, refused_cards={"BADCARD1"}) as op:
            await until_db(lambda: make_operator(charger, op.url, role="billing"))
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, version, configuration=settled
            ) as cp:
                await cp.boot()
                await upstream_connected(gw, charger.identity)
                refused = await cp.authorize("BADCARD1")
                accepted = await cp.authorize(card.uid)
                session = await cp.charge(card.uid, energy_wh=3000)
                await gw.batcher.sync()
                return refused, accepted, session

    refused, accepted, session = run(scenario)
    assert (refused, accepted) == ("Invalid", "Accepted")
    recorded = ChargingSession.objects.get(charger=charger)
    if version == "1.6":
        # The charger used the operator's id; Sparklin recorded the session under it too.
        assert session["transaction_id"] == "4242" == recorded.transaction_id
    assert recorded.state == "completed" and recorded.energy_wh == 3000


def test_billing_fallback_when_the_operator_does_not_answer(charger, card, settings):
    settings.FORWARDING_ANSWER_TIMEOUT = 0.3
    settings.GATEWAY_RESPONSE_TIMEOUT = 0.5
    settled = configured(charger, "1.6")

    async def scenario(gw):
        async with Operator() as op:
            op.silent = {"Authorize"}
            operator = await until_db(
                lambda: make_operator(charger, op.url, role="billing", fallback="refuse")
            )
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, "1.6", configuration=settled
            ) as cp:
                await cp.boot()
                await upstream_connected(gw, charger.identity)
                refused = await cp.authorize(card.uid)
                await until(lambda: not gw.connections[charger.identity].upstream.billing.queue)
                await until_db(
                    lambda: OperatorConnection.objects.filter(pk=operator.pk).update(
                        fallback="sparklin", updated_at=timezone.now()
                    )
                )
                await gw.forwarder.refresh()
                await upstream_connected(gw, charger.identity)
                decided_by_sparklin = await cp.authorize(card.uid)
                await gw.batcher.sync()
                return operator, refused, decided_by_sparklin

    operator, refused, decided_by_sparklin = run(scenario)
    assert (refused, decided_by_sparklin) == ("Invalid", "Accepted")
    notes = list(
        ForwardedFrame.objects.filter(operator=operator)
        .exclude(note="")
        .values_list("note", flat=True)
    )
    assert "no answer in time: fallback (refused)" in notes
    assert "no answer in time: fallback (Sparklin's decision)" in notes


def transaction_calls(frames):
    return [(f[1], f[2]) for f in frames if f[2] in TRANSACTION]


def test_operator_down_during_a_session_then_back_gets_every_transaction_message_once(
    charger, card
):
    """The operator is unreachable for the whole session: the transaction messages wait in the
    durable buffer, and reach it in order, once, when it comes back; Sparklin's own session
    is complete throughout."""
    settled = configured(charger, "1.6")
    port = free_port()

    async def scenario(gw):
        operator = await until_db(lambda: make_operator(charger, f"ws://127.0.0.1:{port}/ocpp"))
        await gw.forwarder.refresh()
        async with connect_charger(gw.url, charger.identity, "1.6", configuration=settled) as cp:
            await cp.boot()
            await cp.charge(card.uid, energy_wh=4000, samples=3)
            await until_db(
                lambda: ChargingSession.objects.filter(charger=charger, state="completed").exists()
            )
            buffered = gw.forwarder.buffer.count(operator.pk)
            async with Operator(port=port) as op:
                await until(lambda: len(op.calls("StopTransaction")) == 1, timeout=10)
                await until(lambda: gw.forwarder.buffer.count(operator.pk) == 0)
                await gw.batcher.sync()
                return operator, buffered, op

    operator, buffered, op = run(scenario)
    expected = [c for c in charger_calls(charger) if c[1] in TRANSACTION + ("MeterValues",)]
    got = [(f[1], f[2]) for f in op.calls() if f[2] in TRANSACTION + ("MeterValues",)]
    assert buffered >= len(expected) == 5  # start, 3 meter values, stop
    assert got == expected  # in order, each once, with the charger's message ids
    state = OperatorConnection.objects.get(pk=operator.pk)
    assert state.buffered == 0 and state.last_message_at is not None
    assert ChargingSession.objects.get(charger=charger).energy_wh == 4000


def test_gateway_restarted_with_a_non_empty_buffer_loses_nothing(charger, card):
    """A gateway stops while its operator is down: the next gateway process (same buffer
    directory and instance name) replays what was buffered once the charger is back and the
    operator reachable."""
    settled = configured(charger, "1.6")
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ocpp"

    async def first(gw):
        operator = await until_db(lambda: make_operator(charger, url))
        await gw.forwarder.refresh()
        async with connect_charger(gw.url, charger.identity, "1.6", configuration=settled) as cp:
            await cp.boot()
            await cp.charge(card.uid, energy_wh=2000, samples=1)
        return operator, gw.forwarder.buffer.count(operator.pk)

    operator, buffered = run(first)
    assert buffered >= 3

    async def second(gw):
        async with Operator(port=port) as op:
            async with connect_charger(gw.url, charger.identity, "1.6", configuration=settled):
                await until(lambda: len(op.calls("StopTransaction")) == 1, timeout=10)
                await until(lambda: gw.forwarder.buffer.count(operator.pk) == 0)
            return op

    op = run(second)
    expected = [c for c in charger_calls(charger) if c[1] in TRANSACTION + ("MeterValues",)]
    assert transaction_calls(op.calls()) == [c for c in expected if c[1] in TRANSACTION]
    assert [(f[1], f[2]) for f in op.calls() if f[2] in TRANSACTION + ("MeterValues",)] == expected


def test_a_full_buffer_drops_meter_values_first_never_transaction_messages(charger):
    mine = make_operator(charger, "ws://127.0.0.1:9/ocpp")
    other = make_operator(charger, "ws://127.0.0.1:9/ocpp", name="Other")
    community = charger.community_id
    dropped = []

    async def scenario():
        buffer = Buffer(limit=3, on_dropped=lambda operator, item: dropped.append(item.unique_id))

        async def add(*ids, operator=mine.pk):
            for unique_id in ids:
                action = {"s": "StartTransaction", "h": "StatusNotification"}.get(unique_id[0])
                action = action or ("MeterValues" if unique_id[0] == "m" else "StopTransaction")
                buffer.add(operator, community, Item(unique_id, action, f"[{unique_id!r}]"))
            await buffer.sync()

        await add("s", "m1", "h")
        await add("m2")  # one too many: the oldest meter value goes
        first = [i.unique_id for i in await buffer.load(mine.pk)]
        await add("e", "e2", "e3")  # the status goes, then only meter values
        second = [i.unique_id for i in await buffer.load(mine.pk)]
        await add("x", operator=other.pk)  # another connection's own bound
        return buffer, first, second

    buffer, first, second = asyncio.run(scenario())
    assert first == ["s", "h", "m2"] and dropped[0] == "m1"
    assert second == ["s", "e", "e2", "e3"]  # never a transaction message
    assert buffer.count(mine.pk) == 4 and buffer.count(other.pk) == 1
    # In the database: a restarted gateway, or another one, reads the same backlog.
    assert relaybuffer.load(mine.pk)[0][1:3] == ("s", "StartTransaction")
    assert [r[1] for r in relaybuffer.load(mine.pk)] == ["s", "e", "e2", "e3"]


def test_an_item_answered_before_it_was_written_leaves_no_row(charger):
    """The operator may answer a frame sent live before the flush that writes it returns: the
    row is then deleted (or never written), not replayed later."""
    operator = make_operator(charger, "ws://127.0.0.1:9/ocpp")

    async def scenario():
        buffer = Buffer(limit=10)
        early, late = Item("a", "StatusNotification", "[]"), Item("b", "MeterValues", "[]")
        buffer.add(operator.pk, charger.community_id, early)
        buffer.remove(operator.pk, early)  # answered before any flush: never written
        buffer.add(operator.pk, charger.community_id, late)
        flush = buffer.schedule()
        await asyncio.sleep(0)  # the flush has taken `late`
        buffer.remove(operator.pk, late)
        await flush
        await buffer.sync()
        await until(lambda: not buffer.pending)
        await asyncio.sleep(0.05)
        return buffer

    buffer = asyncio.run(scenario())
    assert relaybuffer.load(operator.pk) == [] and buffer.count(operator.pk) == 0


def test_one_gateway_at_a_time_holds_a_relay_lease(charger):
    """The lease: granted to the first, refused to another while held, renewed by its holder,
    taken over once released or expired; a restarted gateway drops the leases its previous
    process left."""
    operator = make_operator(charger, "ws://127.0.0.1:9/ocpp")
    community = charger.community_id
    assert relaybuffer.claim(operator.pk, community, "gw-a/1", 30) is None
    assert relaybuffer.claim(operator.pk, community, "gw-b/1", 30) == "gw-a/1"
    assert relaybuffer.renew(["gw-a/1", "gw-b/1"], 30) == {"gw-a/1"}
    relaybuffer.release(["gw-a/1"])
    assert relaybuffer.claim(operator.pk, community, "gw-b/1", 0.01) is None
    import time

    time.sleep(0.05)  # gw-b died: its lease expires
    assert relaybuffer.claim(operator.pk, community, "gw-a/2", 30) is None
    assert relaybuffer.renew(["gw-b/1"], 30) == set()  # gw-b learns it lost it
    assert relaybuffer.release_instance("gw-a") == 1
    assert relaybuffer.claim(operator.pk, community, "gw-c/1", 30) is None


def test_the_backlog_follows_the_charger_to_another_gateway(charger, card, settings):
    """The operator is down while the charger runs a session through one gateway; the charger
    then reconnects through a second gateway (the first still running) and the operator comes
    back: the second gateway replays the backlog, in order, once; the first sends nothing."""
    redis_client(settings)
    settled = configured(charger, "1.6")
    port = free_port()

    def gateway(name):
        return Gateway(
            host="127.0.0.1",
            port=0,
            batcher=EventBatcher(flush_seconds=0.05),
            decisions=Decisions(),
            instance_id=name,
        )

    async def scenario(_unused):
        operator = await until_db(lambda: make_operator(charger, f"ws://127.0.0.1:{port}/ocpp"))
        one, two = gateway("gw-one"), gateway("gw-two")
        async with one, two:
            async with connect_charger(
                one.url, charger.identity, "1.6", configuration=settled
            ) as cp:
                await cp.boot()
                await cp.charge(card.uid, energy_wh=3000, samples=2)
            held = one.forwarder.buffer.count(operator.pk)
            await until(lambda: charger.identity not in one.connections)
            async with Operator(port=port) as op:
                async with connect_charger(
                    two.url, charger.identity, "1.6", configuration=settled
                ) as cp:
                    await cp.heartbeat()
                    await until(lambda: len(op.calls("Heartbeat")) == 1, timeout=10)
                    # A delivered frame's row goes once its answer is back (a later flush).
                    await until_db(lambda: relaybuffer.load(operator.pk) == [], timeout=10)
                await one.batcher.sync()
                await two.batcher.sync()
                return operator, held, op

    operator, held, op = run(scenario)
    expected = [c for c in charger_calls(charger) if c[1] in TRANSACTION + ("MeterValues",)]
    got = [(f[1], f[2]) for f in op.calls() if f[2] in TRANSACTION + ("MeterValues",)]
    assert held >= len(expected) == 4  # start, 2 meter values, stop
    assert got == expected  # in order, each once, from the second gateway
    assert relaybuffer.load(operator.pk) == []
    state = OperatorConnection.objects.get(pk=operator.pk)
    assert state.gateway == "gw-two" and state.buffered == 0


def test_disconnecting_an_operator_stops_forwarding_at_the_next_look(charger, manager):
    settled = configured(charger, "1.6")

    async def scenario(gw):
        async with Operator() as op:
            operator = await until_db(lambda: make_operator(charger, op.url))
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, "1.6", configuration=settled
            ) as cp:
                await cp.boot()
                await upstream_connected(gw, charger.identity, "monitoring")
                await until(lambda: len(op.calls("BootNotification")) == 1)
                from forwarding.services import disconnect_operator

                await until_db(
                    lambda: disconnect_operator(operator=operator, actor=manager) or True
                )
                await gw.forwarder.refresh()
                assert gw.connections[charger.identity].upstream is None
                await cp.heartbeat()
                await cp.status(1, "Available")
                await asyncio.sleep(0.2)
                return op, operator

    op, operator = run(scenario)
    assert [f[2] for f in op.calls()] == ["BootNotification"]
    assert not OperatorConnection.objects.get(pk=operator.pk).connected


def test_worker_ignores_an_operator_id_of_another_charger(community, site, charger):
    """A forged or stale operator id in an event never touches another charger's operator."""
    from chargers.events import process_events

    other = builders.make_charger(community, site=site, identity="CP-OTHER")
    foreign = make_operator(other, "ws://127.0.0.1:9/ocpp")
    mine = make_operator(charger, "ws://127.0.0.1:9/ocpp")
    now = timezone.now().isoformat()

    def state(operator):
        return {
            "identity": charger.identity,
            "kind": "operator_state",
            "payload": {
                "operator": operator.pk,
                "connected": True,
                "last_message_at": now,
                "buffered": 3,
                "last_error": "",
                "gateway": "gw-1",
            },
            "received_at": now,
        }

    frame = {
        "identity": charger.identity,
        "kind": "operator_frame",
        "payload": {
            "operator": foreign.pk,
            "direction": "up",
            "message_type": 2,
            "unique_id": "u1",
            "action": "Heartbeat",
            "frame": '[2,"u1","Heartbeat",{}]',
            "note": "",
        },
        "received_at": now,
    }
    process_events([state(foreign), state(mine), frame])
    process_events([state(mine)])  # twice: nothing changes
    assert OperatorConnection.objects.get(pk=mine.pk).buffered == 3
    assert OperatorConnection.objects.get(pk=mine.pk).connected
    assert not OperatorConnection.objects.get(pk=foreign.pk).connected
    assert not ForwardedFrame.objects.exists()


def test_billing_operator_starts_and_stops_charging_remotely(charger, card):
    """The Billing operator's RemoteStart reaches the charger through the command path (a
    ChargerCommand row, not from the portal); the start it causes gets the operator's id, which
    its RemoteStop then names."""
    settled = configured(charger, "1.6")

    async def scenario(gw):
        async with Operator(first_transaction_id=5150) as op:
            await until_db(lambda: make_operator(charger, op.url, role="billing"))
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, "1.6", configuration=settled
            ) as cp:
                await cp.boot()
                await cp.status(1, "Available")
                await upstream_connected(gw, charger.identity)
                from ocpp.v16 import call as call16

                upstream = op.connections[charger.identity]
                started = await upstream.call(
                    call16.RemoteStartTransaction(id_tag=card.uid, connector_id=1)
                )
                await until(lambda: len(op.calls("StartTransaction")) == 1, timeout=10)
                await until(lambda: len(op.calls("MeterValues")) >= 1, timeout=10)
                stopped = await upstream.call(call16.RemoteStopTransaction(transaction_id=5150))
                await until(lambda: len(op.calls("StopTransaction")) == 1, timeout=10)
                await until_db(
                    lambda: ChargingSession.objects.filter(
                        charger=charger, state="completed"
                    ).exists()
                )
                return started, stopped

    started, stopped = run(scenario)
    assert started.status == "Accepted" and stopped.status == "Accepted"
    session = ChargingSession.objects.get(charger=charger)
    assert session.transaction_id == "5150" and session.stop_reason == "Remote"
    commands = ChargerCommand.objects.filter(from_portal=False, action__startswith="Remote")
    assert sorted(commands.values_list("action", "status")) == [
        ("RemoteStartTransaction", "accepted"),
        ("RemoteStopTransaction", "accepted"),
    ]


def test_201_monitoring_operator_gets_every_frame(charger, card):
    settled = configured(charger, "2.0.1")

    async def scenario(gw):
        async with Operator() as op:
            await until_db(lambda: make_operator(charger, op.url))
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, "2.0.1", configuration=settled
            ) as cp:
                await cp.boot()
                await cp.charge(card.uid, energy_wh=2500)
                await until(
                    lambda: (
                        len(
                            [
                                f
                                for f in op.calls("TransactionEvent")
                                if f[3]["eventType"] == "Ended"
                            ]
                        )
                        == 1
                    )
                )
                from ocpp.v201 import call as call201

                upstream = op.connections[charger.identity]
                refused = await upstream.call(
                    call201.RequestStopTransaction(transaction_id="whatever")
                )
                await gw.batcher.sync()
                await until_db(lambda: len(op.calls()) >= len(charger_calls(charger)))
                return op, refused

    op, refused = run(scenario)
    assert refused is None
    relayed = [(f[1], f[2]) for f in op.calls()]
    assert relayed == charger_calls(charger)
    assert ChargingSession.objects.get(charger=charger).state == "completed"


def test_the_upstream_moves_with_the_charger_to_another_gateway(charger, settings):
    """Two gateways share the registry (Redis): the charger reconnects through the second while
    its first connection is still open; the newest connection wins, the first gateway closes
    its stale socket and its upstream, the second opens its own, so the operator keeps one
    connection for the charger, from where the charger is."""
    redis_client(settings)
    settings.GATEWAY_INSTANCE_ID = ""  # one buffer file per gateway (named by its port)
    settled = configured(charger, "1.6")

    async def scenario(_unused):
        async with Operator() as op:
            await until_db(lambda: make_operator(charger, op.url))
            one = Gateway(
                host="127.0.0.1",
                port=0,
                batcher=EventBatcher(flush_seconds=0.05),
                decisions=Decisions(),
                instance_id="gw-one",
            )
            two = Gateway(
                host="127.0.0.1",
                port=0,
                batcher=EventBatcher(flush_seconds=0.05),
                decisions=Decisions(),
                instance_id="gw-two",
            )
            async with one, two:
                async with connect_charger(
                    one.url, charger.identity, "1.6", configuration=settled
                ) as first:
                    await first.boot()
                    await upstream_connected(one, charger.identity, "monitoring")
                    async with connect_charger(
                        two.url, charger.identity, "1.6", configuration=settled
                    ) as second:
                        await second.boot()
                        await until(lambda: charger.identity not in one.connections, timeout=10)
                        await upstream_connected(two, charger.identity, "monitoring")
                        await second.heartbeat()
                        await until(lambda: len(op.calls("Heartbeat")) == 1)
                        return op, len(op.calls("BootNotification"))

    op, boots = run(scenario)
    assert boots == 2  # one per charger connection, each relayed from where it arrived
    gateways = list(
        ForwardedFrame.objects.filter(action="Heartbeat", direction="up").values_list(
            "operator", flat=True
        )
    )
    assert len(gateways) == 1


def test_a_failing_buffer_never_breaks_sparklins_own_answers(charger, card, monkeypatch):
    """Forwarding is a side path: when the gateway's buffer fails (disk full…), the charger is
    still answered and recorded by Sparklin, and the operator's state says what went wrong."""
    settled = configured(charger, "1.6")

    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    async def scenario(gw):
        async with Operator() as op:
            operator = await until_db(lambda: make_operator(charger, op.url))
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, "1.6", configuration=settled
            ) as cp:
                await cp.boot()
                await upstream_connected(gw, charger.identity, "monitoring")
                monkeypatch.setattr(Buffer, "add", broken)
                status = await cp.authorize(card.uid)
                session = await cp.charge(card.uid, energy_wh=1000)
                await gw.batcher.sync()
                return operator, status, session

    operator, status, session = run(scenario)
    assert status == "Accepted" and session["authorization"] == "Accepted"
    assert ChargingSession.objects.get(charger=charger).state == "completed"
    assert "buffer failed" in OperatorConnection.objects.get(pk=operator.pk).last_error


def test_a_retried_start_gets_the_billing_operators_first_answer_once(charger, card):
    """The charger lost the answer to its StartTransaction and sends it again (same connector,
    idTag, meterStart, timestamp; a new message id): it gets the same operator id, the operator
    sees one start, Sparklin one session."""
    settled = configured(charger, "1.6")

    async def scenario(gw):
        async with Operator(first_transaction_id=777) as op:
            await until_db(lambda: make_operator(charger, op.url, role="billing"))
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, "1.6", configuration=settled
            ) as cp:
                await cp.boot()
                await upstream_connected(gw, charger.identity)
                from ocpp.v16 import call as call16

                start = call16.StartTransaction(
                    connector_id=1,
                    id_tag=card.uid,
                    meter_start=100,
                    timestamp="2026-12-01T10:00:00Z",
                )
                first = await cp.call(start)
                again = await cp.call(start)
                await gw.batcher.sync()
                return op, first.transaction_id, again.transaction_id

    op, first, again = run(scenario)
    assert first == again == 777
    assert len(op.calls("StartTransaction")) == 1
    assert list(ChargingSession.objects.values_list("transaction_id", flat=True)) == ["777"]


def test_201_billing_operator_answers_the_transaction_events(charger, card):
    """2.0.1 Billing: the TransactionEvent answers the charger gets are the operator's — a card
    Sparklin would accept is refused at Started and Ended because the operator says Invalid —
    while Sparklin still records the session itself."""
    from ocpp.v201 import call as call201

    from simulator.fleet import now_iso

    settled = configured(charger, "2.0.1")

    def event(event_type, seq, **extra):
        return call201.TransactionEvent(
            event_type=event_type,
            timestamp=now_iso(),
            trigger_reason="Authorized" if event_type == "Started" else "StopAuthorized",
            seq_no=seq,
            transaction_info={"transaction_id": "T-201-BILLING", **extra},
            evse={"id": 1, "connector_id": 1},
            id_token={"id_token": card.uid, "type": "ISO14443"},
        )

    async def scenario(gw):
        async with Operator(refused_cards={card.uid}) as op:
            await until_db(lambda: make_operator(charger, op.url, role="billing"))
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, "2.0.1", configuration=settled
            ) as cp:
                await cp.boot()
                await upstream_connected(gw, charger.identity)
                started = await cp.call(event("Started", 0, charging_state="Charging"))
                ended = await cp.call(event("Ended", 1, stopped_reason="DeAuthorized"))
                await gw.batcher.sync()
                return started, ended

    started, ended = run(scenario)
    assert started.id_token_info["status"] == "Invalid"  # the operator's word, not Sparklin's
    assert ended.id_token_info["status"] == "Invalid"
    assert ChargingSession.objects.filter(charger=charger, transaction_id="T-201-BILLING").exists()


def test_an_edited_operator_is_reconnected_at_once_with_the_new_settings(charger, manager):
    """The portal changes the URL and password of a live operator connection: the gateway
    reconnects the upstream to the new address with the new password at its next look; the
    old operator receives nothing more."""
    settled = configured(charger, "1.6")

    async def scenario(gw):
        async with Operator() as old, Operator() as new:
            operator = await until_db(lambda: make_operator(charger, old.url))
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, "1.6", configuration=settled
            ) as cp:
                await cp.boot()
                await until(lambda: len(old.calls("BootNotification")) == 1)
                from forwarding.services import update_operator

                await until_db(
                    lambda: update_operator(
                        operator=operator,
                        actor=manager,
                        name="Moved",
                        url=new.url,
                        identity=charger.identity,
                        password="new-secret",
                        role="monitoring",
                        fallback="sparklin",
                    )
                )
                await gw.forwarder.refresh()
                await until(lambda: len(new.calls("BootNotification")) == 1, timeout=10)
                await cp.heartbeat()
                await until(lambda: len(new.calls("Heartbeat")) == 1)
                return old, new

    old, new = run(scenario)
    assert old.calls("Heartbeat") == []
    assert new.auth_seen[-1] and new.auth_seen[-1].startswith("Basic ")


def test_several_operators_of_one_charger_each_get_every_frame_billing_decides(charger, card):
    """A Billing and a Monitoring operator on one charger: each gets every CALL, in order, on
    its own connection (its own buffer); the Billing one's answer is the charger's, the
    Monitoring one's is ignored."""
    settled = configured(charger, "1.6")

    async def scenario(gw):
        async with (
            Operator(first_transaction_id=9001) as billing,
            Operator(first_transaction_id=1234, refused_cards={card.uid}) as monitoring,
        ):
            await until_db(lambda: make_operator(charger, billing.url, role="billing"))
            await until_db(
                lambda: make_operator(charger, monitoring.url, role="monitoring", name="Mon")
            )
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, "1.6", configuration=settled
            ) as cp:
                await cp.boot()
                await upstream_connected(gw, charger.identity, "billing")
                await upstream_connected(gw, charger.identity, "monitoring")
                session = await cp.charge(card.uid, energy_wh=1500)
                await until(lambda: len(monitoring.calls("StopTransaction")) == 1, timeout=10)
                await until(lambda: len(billing.calls("StopTransaction")) == 1, timeout=10)
                await gw.batcher.sync()
                return billing, monitoring, session

    billing, monitoring, session = run(scenario)
    # The Billing operator's id and acceptance; the Monitoring one refused the card: ignored.
    assert session["transaction_id"] == "9001" and session["authorization"] == "Accepted"
    sent = [c for c in charger_calls(charger) if c[1] != "Authorize"]
    for op in (billing, monitoring):
        assert [(f[1], f[2]) for f in op.calls() if f[2] != "Authorize"] == sent
