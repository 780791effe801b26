"""What each role lets an operator do to the charger, message ids mapped both ways, and one call
in flight per direction (issue 12): the operator's calls, sent at once as raw frames, reach the
charger one at a time and come back under the operator's own ids; a charger frame goes to the
operator only once the one before it was answered."""

import asyncio
import json

import pytest

from chargers.models import ChargerCommand, OcppMessage
from forwarding.models import ForwardedFrame
from ocpp_gateway.upstream import BILLING, MONITORING, allowed
from simulator.fleet import connect_charger

from .. import builders
from ..ocpp_gateway.test_command_bus import configured
from ..ocpp_gateway.test_gateway import run, until
from ..ocpp_gateway.test_remote_charging import until_db
from .operator_csms import Operator, make_operator
from .test_relay import upstream_connected

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]

# Never relayed from an operator, whatever its role: they change the charger.
CHANGING = {
    "1.6": [
        "ChangeConfiguration",
        "SetChargingProfile",
        "ClearChargingProfile",
        "Reset",
        "UpdateFirmware",
        "ChangeAvailability",
        "SendLocalList",
        "ClearCache",
    ],
    "2.0.1": [
        "SetVariables",
        "SetChargingProfile",
        "ClearChargingProfile",
        "Reset",
        "UpdateFirmware",
        "ChangeAvailability",
        "SendLocalList",
        "SetNetworkProfile",
    ],
}


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.GATEWAY_HEARTBEAT_INTERVAL = 120
    settings.FORWARDING_REFRESH_SECONDS = 0.1
    settings.FORWARDING_RECONNECT_MAX_SECONDS = 0.3
    settings.GATEWAY_INSTANCE_ID = "gw-roles-test"
    settings.FORWARDING_ALLOW_PRIVATE_HOSTS = True  # the operator runs on loopback


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_what_each_role_may_have_sent_to_the_charger(version):
    start, stop = (
        ("RemoteStartTransaction", "RemoteStopTransaction")
        if version == "1.6"
        else ("RequestStartTransaction", "RequestStopTransaction")
    )
    reads = ["GetConfiguration"] if version == "1.6" else ["GetVariables", "GetBaseReport"]
    for action in [*reads, "GetLocalListVersion", "GetCompositeSchedule"]:
        assert allowed(BILLING, version, action, {}) and allowed(MONITORING, version, action, {})
    for action in (start, stop, "UnlockConnector"):
        assert allowed(BILLING, version, action, {})
        assert not allowed(MONITORING, version, action, {})
    for wanted in ("StatusNotification", "MeterValues", "BootNotification"):
        assert allowed(BILLING, version, "TriggerMessage", {"requestedMessage": wanted})
    assert allowed(MONITORING, version, "TriggerMessage", {"requestedMessage": "MeterValues"})
    assert not allowed(
        MONITORING, version, "TriggerMessage", {"requestedMessage": "BootNotification"}
    )
    for action in CHANGING[version]:
        assert not allowed(BILLING, version, action, {}), action
        assert not allowed(MONITORING, version, action, {}), action


def answers(op, ids):
    """The operator's received answers by message id (CALLRESULT / CALLERROR frames)."""
    return {f[1]: f for _, f in op.frames if f[0] in (3, 4) and f[1] in ids}


def test_operator_calls_sent_at_once_reach_the_charger_one_at_a_time_under_their_ids(charger):
    """A Billing and a Monitoring operator each fire their calls at once (raw frames): the
    allowed ones reach the charger one at a time (its one outstanding call) and are answered to
    each operator under that operator's message id; changing calls get SecurityError, an
    unknown action NotImplemented, and every refusal is in the forwarded-frame log."""
    settled = configured(charger, "1.6")
    billing_calls = {
        "b-unlock": ("UnlockConnector", {"connectorId": 1}),
        "b-trigger": ("TriggerMessage", {"requestedMessage": "StatusNotification"}),
        "b-read-1": ("GetConfiguration", {"key": ["HeartbeatInterval"]}),
        "b-read-2": ("GetConfiguration", {"key": ["MeterValueSampleInterval"]}),
        "b-reset": ("Reset", {"type": "Hard"}),
        "b-profile": ("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {}}),
        "b-unknown": ("MakeCoffee", {}),
    }
    monitoring_calls = {
        "m-trigger": ("TriggerMessage", {"requestedMessage": "MeterValues"}),
        "m-boot": ("TriggerMessage", {"requestedMessage": "BootNotification"}),
        "m-unlock": ("UnlockConnector", {"connectorId": 1}),
        "m-read": ("GetConfiguration", {"key": ["HeartbeatInterval"]}),
    }

    async def fire(op, calls):
        ws = op.connections[charger.identity]._connection
        for unique_id, (action, payload) in calls.items():
            await ws.send(json.dumps([2, unique_id, action, payload]))

    async def scenario(gw):
        async with Operator() as billing, Operator() as monitoring:
            await until_db(lambda: make_operator(charger, billing.url, role="billing"))
            await until_db(lambda: make_operator(charger, monitoring.url, name="Watcher"))
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, "1.6", configuration=settled
            ) as cp:
                await cp.boot()
                await upstream_connected(gw, charger.identity, "billing")
                await upstream_connected(gw, charger.identity, "monitoring")
                await asyncio.gather(
                    fire(billing, billing_calls), fire(monitoring, monitoring_calls)
                )
                await until(
                    lambda: (
                        len(answers(billing, billing_calls)) == len(billing_calls)
                        and len(answers(monitoring, monitoring_calls)) == len(monitoring_calls)
                    ),
                    timeout=20,
                )
                await gw.batcher.sync()
                return answers(billing, billing_calls), answers(monitoring, monitoring_calls)

    billed, watched = run(scenario)
    ok = {k for k, f in billed.items() if f[0] == 3} | {k for k, f in watched.items() if f[0] == 3}
    assert ok == {"b-unlock", "b-trigger", "b-read-1", "b-read-2", "m-trigger", "m-read"}
    # Each answer is the charger's answer to that very call (ids mapped both ways).
    assert billed["b-unlock"][2] == {"status": "Unlocked"}
    assert billed["b-trigger"][2] == watched["m-trigger"][2] == {"status": "Accepted"}
    for unique_id, key in (
        ("b-read-1", "HeartbeatInterval"),
        ("b-read-2", "MeterValueSampleInterval"),
        ("m-read", "HeartbeatInterval"),
    ):
        assert [
            k["key"] for k in billed.get(unique_id, watched.get(unique_id))[2]["configurationKey"]
        ] == [key]
    codes = {k: f[2] for k, f in {**billed, **watched}.items() if f[0] == 4}
    assert codes == {
        "b-reset": "SecurityError",
        "b-profile": "SecurityError",
        "b-unknown": "NotImplemented",
        "m-boot": "SecurityError",
        "m-unlock": "SecurityError",
    }
    refused = ForwardedFrame.objects.filter(direction="up", message_type=4)
    assert sorted(refused.values_list("unique_id", flat=True)) == sorted(codes)
    # Nothing refused reached the charger; what was relayed went one call at a time.
    relayed = ChargerCommand.objects.filter(from_portal=False)
    assert sorted(relayed.values_list("action", flat=True)) == sorted(
        ["UnlockConnector", "TriggerMessage", "TriggerMessage"] + ["GetConfiguration"] * 3
    )
    # The charger's log: every call Sparklin sent it (the relayed ones among them) was
    # answered before the next one left.
    log = OcppMessage.objects.filter(charger=charger).order_by("at", "id")
    exchanges = [
        (m.direction, m.message_type, m.unique_id, m.action)
        for m in log
        if (m.direction, m.message_type) in (("out", 2), ("in", 3), ("in", 4))
    ]
    sent, answered = exchanges[0::2], exchanges[1::2]
    assert [(d, t) for d, t, _, _ in sent] == [("out", 2)] * len(sent)
    assert [u for _, _, u, _ in answered] == [u for _, _, u, _ in sent]
    assert sorted(a for _, _, _, a in sent if a in ("UnlockConnector", "TriggerMessage")) == [
        "TriggerMessage",
        "TriggerMessage",
        "UnlockConnector",
    ]


def test_a_charger_frame_goes_up_only_once_the_one_before_was_answered(charger):
    """One call in flight towards the operator: while it holds its answer to a
    StatusNotification, the charger's next frame (answered by Sparklin meanwhile) waits."""
    settled = configured(charger, "1.6")

    async def scenario(gw):
        async with Operator() as op:
            release = op.held["StatusNotification"] = asyncio.Event()
            await until_db(lambda: make_operator(charger, op.url))
            await gw.forwarder.refresh()
            async with connect_charger(
                gw.url, charger.identity, "1.6", configuration=settled
            ) as cp:
                await cp.boot()
                await upstream_connected(gw, charger.identity, "monitoring")
                await until(lambda: len(op.calls("BootNotification")) == 1)
                await cp.status(1, "Available")  # answered by Sparklin; held by the operator
                await cp.heartbeat()
                await until(lambda: len(op.calls("StatusNotification")) == 1)
                while_held = [f[2] for f in op.calls()]
                release.set()
                await until(lambda: len(op.calls("Heartbeat")) == 1)
                return while_held, [f[2] for f in op.calls()]

    while_held, after = run(scenario)
    assert while_held == ["BootNotification", "StatusNotification"]
    assert after == ["BootNotification", "StatusNotification", "Heartbeat"]


def test_an_unreachable_billing_operator_gets_the_fallback_at_once_and_it_is_logged(
    charger, community, individual, settings
):
    """A Billing operator that cannot be reached is not waited for (a late Authorize means
    nothing): the connection's fallback answers at once — here "refuse" — and the frame log
    says so; the start is still buffered for the operator."""
    from ..e2e.processes import free_port

    settings.FORWARDING_ANSWER_TIMEOUT = 60  # far beyond the test's own bound below
    settled = configured(charger, "1.6")
    port = free_port()  # nobody listens
    card = builders.make_card(community, holder=individual, uid="04A23B11")  # Sparklin: yes

    async def scenario(gw):
        operator = await until_db(
            lambda: make_operator(
                charger, f"ws://127.0.0.1:{port}/ocpp", role="billing", fallback="refuse"
            )
        )
        await gw.forwarder.refresh()
        async with connect_charger(gw.url, charger.identity, "1.6", configuration=settled) as cp:
            await cp.boot()
            status = await asyncio.wait_for(cp.authorize(card.uid), 20)
            await gw.batcher.sync()
            return operator, status, gw.forwarder.buffer.count(operator.pk)

    operator, status, buffered = run(scenario)
    assert status == "Invalid"  # refused by the fallback, though Sparklin knows the card
    notes = ForwardedFrame.objects.filter(operator=operator).values_list("note", flat=True)
    assert "no answer in time: fallback (refused)" in notes
    assert buffered == 1  # the boot, for the operator; the Authorize is never buffered
