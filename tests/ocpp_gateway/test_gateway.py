"""The gateway end to end over loopback websockets: a real server in-process on a free port, real
clients (the simulator and raw frames), events persisted by the eager task.

Every test is sync and runs its scenario with `asyncio.run` under a hard timeout. The database
is used from the gateway's threads, hence `transaction=True`.
"""

import asyncio
import json
import os
from decimal import Decimal

import pytest
from django.utils import timezone
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chargers.models import (
    Charger,
    ChargerCommand,
    ChargingSession,
    Connector,
    OcppMessage,
    UnknownCharger,
)
from ocpp_gateway.batcher import EventBatcher
from ocpp_gateway.decisions import Decisions
from ocpp_gateway.server import Gateway
from simulator.fleet import basic_auth, connect_charger, run_session

from .. import builders

# The gateway and the worker enter their own scopes (scopes_disabled for cross-tenant lookups,
# the charger's community for its writes); the test body reads inside the community's scope.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]

TIMEOUT = 15


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.GATEWAY_HEARTBEAT_INTERVAL = 120
    settings.GATEWAY_METER_SAMPLE_INTERVAL = 30


@pytest.fixture
def driver_card(community, individual):
    return builders.make_card(community, holder=individual, uid="04A23B11")


def redis_client(settings):
    """The test Redis (REDIS_URL, the engineer's own database), emptied; else skip."""
    redis = pytest.importorskip("redis")
    url = os.environ.get("REDIS_URL") or os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("no REDIS_URL")
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {url}")
    settings.REDIS_URL = url
    return client


def run(scenario, **gateway_options):
    """Start a gateway on 127.0.0.1:<free port>, run `scenario(gateway)`, stop the gateway
    (which closes connections and flushes events), all within TIMEOUT seconds."""

    async def main():
        gateway = Gateway(
            host="127.0.0.1",
            port=0,
            batcher=EventBatcher(flush_seconds=0.05),
            decisions=Decisions(),
            **gateway_options,
        )
        async with gateway:
            return await scenario(gateway)

    return asyncio.run(asyncio.wait_for(main(), TIMEOUT))


async def until(predicate, timeout=5.0, step=0.02):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(step)


async def configured_and_recorded(gw, identity, timeout=10.0):
    """Wait until the connection's configuration task has finished (its last answer handled,
    its events emitted) and every event emitted so far is recorded."""
    await until(lambda: gw.connections[identity]._config_task is None, timeout=timeout)
    await gw.batcher.sync()


async def raw_client(url, identity, protocols=("ocpp1.6",), headers=None):
    return await connect(
        url + identity, subprotocols=list(protocols), additional_headers=headers, open_timeout=5
    )


async def exchange(ws, frame, timeout=5):
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


# --- the upgrade --------------------------------------------------------------------------------


def test_unknown_identity_is_refused_with_404_and_recorded(db):
    async def scenario(gw):
        with pytest.raises(InvalidStatus) as refused:
            await raw_client(gw.url, "NOBODY-01")
        return refused.value.response.status_code

    assert run(scenario) == 404
    row = UnknownCharger.objects.get(identity="NOBODY-01")
    assert row.reason == UnknownCharger.Reason.UNKNOWN and row.attempts == 1
    assert row.remote_address == "127.0.0.1"


def test_wrong_or_missing_password_is_refused_right_one_accepted(community, site):
    builders.make_charger(community, site=site, identity="CP-PW", password="s3cret")

    async def scenario(gw):
        statuses = []
        for headers in ({"Authorization": basic_auth("CP-PW", "nope")}, None):
            with pytest.raises(InvalidStatus) as refused:
                await raw_client(gw.url, "CP-PW", headers=headers)
            statuses.append(refused.value.response.status_code)
        ws = await raw_client(
            gw.url, "CP-PW", headers={"Authorization": basic_auth("CP-PW", "s3cret")}
        )
        answer = await exchange(ws, [2, "h1", "Heartbeat", {}])
        await ws.close()
        return statuses, answer

    statuses, answer = run(scenario)
    assert statuses == [401, 401]
    assert answer[0] == 3 and "currentTime" in answer[2]
    assert UnknownCharger.objects.get(identity="CP-PW").reason == "bad_password"
    assert UnknownCharger.objects.get(identity="CP-PW").attempts == 2


def test_subprotocol_negotiation(community, site):
    builders.make_charger(community, site=site, identity="CP-PROTO")

    async def scenario(gw):
        chosen = []
        for offered in (["ocpp1.6", "ocpp2.0.1"], ["ocpp1.6"], ["ocpp2.0.1"]):
            ws = await raw_client(gw.url, "CP-PROTO", protocols=offered)
            chosen.append(ws.subprotocol)
            await ws.close()
        with pytest.raises(InvalidStatus) as refused:
            await raw_client(gw.url, "CP-PROTO", protocols=["ocpp1.5"])
        return chosen, refused.value.response.status_code

    chosen, status = run(scenario)
    assert chosen == ["ocpp2.0.1", "ocpp1.6", "ocpp2.0.1"]
    assert status == 400
    assert UnknownCharger.objects.get(identity="CP-PROTO").reason == "bad_subprotocol"


# --- what chargers report -----------------------------------------------------------------------


def test_boot_heartbeat_status_then_disconnect(charger):
    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "1.6") as cp:
            boot = await cp.boot(vendor="Spark", model="S1", firmware="4.2")
            await cp.heartbeat()
            for connector_id in (0, 1, 2):
                await cp.status(connector_id, "Available")
            await cp.status(2, "Charging")
            # While connected, the flushed events show the charger connected.
            await until(lambda: gw.batcher.pending == 0 and gw.batcher.published >= 8)
            connected = await asyncio.to_thread(
                lambda: Charger.objects.get(pk=charger.pk).connected
            )
        return boot, connected

    boot, connected_while_open = run(scenario)
    assert boot.status == "Accepted" and boot.interval == 120
    assert connected_while_open is True
    c = Charger.objects.get(pk=charger.pk)
    assert c.connected is False  # the disconnection was recorded
    assert (c.reported_vendor, c.reported_model, c.firmware_version) == ("Spark", "S1", "4.2")
    assert c.ocpp_version == "1.6" and c.last_seen is not None and c.heartbeat_interval == 120
    assert sorted(Connector.objects.filter(charger=c).values_list("connector_id", "status")) == [
        (1, "Available"),
        (2, "Charging"),
    ]
    actions = set(
        OcppMessage.objects.filter(charger=c, direction="in").values_list("action", flat=True)
    )
    assert {"BootNotification", "Heartbeat", "StatusNotification"} <= actions
    assert OcppMessage.objects.filter(charger=c, direction="out", message_type=3).exists()


def test_whole_16_session_recorded_with_energy_and_cost(charger, driver_card):
    result = run(
        lambda gw: run_session(
            gw.url, charger.identity, "1.6", card="04:a2:3b:11", energy_wh=7404, samples=2
        )
    )
    assert result["authorization"] == "Accepted"
    s = ChargingSession.objects.get(charger=charger)
    assert s.transaction_id == result["transaction_id"]
    assert s.state == ChargingSession.State.COMPLETED
    assert s.energy_wh == Decimal("7404.0")
    assert s.cost == Decimal("1.86")
    assert s.card == driver_card and s.holder == driver_card.holder
    assert s.samples.count() == 3


def test_whole_201_session_recorded_with_energy_and_cost(charger, driver_card):
    result = run(
        lambda gw: run_session(
            gw.url, charger.identity, "2.0.1", card="04A23B11", energy_wh=10000, samples=3
        )
    )
    assert result["authorization"] == "Accepted"
    s = ChargingSession.objects.get(charger=charger)
    assert s.transaction_id == result["transaction_id"]
    assert s.state == ChargingSession.State.COMPLETED
    assert s.energy_wh == Decimal("10000.0")
    assert s.cost == Decimal("2.52")
    assert s.last_seq_no == 4 and s.card == driver_card
    assert Charger.objects.get(pk=charger.pk).ocpp_version == "2.0.1"


def test_authorize_answers_invalid_and_blocked(community, charger, individual):
    builders.make_card(community, holder=None, uid="NOHOLDER")

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "2.0.1") as cp:
            await cp.boot()
            return [await cp.authorize("UNKNOWN1", "Local"), await cp.authorize("NOHOLDER")]

    assert run(scenario) == ["Invalid", "Blocked"]


def test_repeated_start_transaction_gets_the_same_id(charger):
    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity)
        start = {
            "connectorId": 1,
            "idTag": "X1",
            "meterStart": 10,
            "timestamp": "2025-03-10T08:00:00Z",
        }
        first = await exchange(ws, [2, "s1", "StartTransaction", start])
        again = await exchange(ws, [2, "s2", "StartTransaction", start])
        await ws.close()
        return first[2]["transactionId"], again[2]["transactionId"]

    first, again = run(scenario)
    assert first == again
    assert ChargingSession.objects.filter(charger=charger).count() == 1


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version,code,unknown_type",
    [
        ("1.6", "FormationViolation", "FormationViolation"),
        ("2.0.1", "RpcFrameworkError", "MessageTypeNotSupported"),
    ],
)
def test_malformed_frame_gets_callerror_and_connection_stays_up(
    charger, version, code, unknown_type
):
    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity, protocols=[f"ocpp{version}"])
        answers = [
            await exchange(ws, '[2, "bad-1", "Heartbeat", {'),  # truncated JSON
            await exchange(ws, [2, "bad-2"]),  # an array, but not a CALL
            await exchange(ws, [7, "bad-3", {}]),  # unknown MessageTypeId
        ]
        await ws.send("not json at all")  # no id to answer: ignored, the connection stays up
        await ws.send('{"hello": 1}')
        answers.append(await exchange(ws, [2, "ok-1", "Heartbeat", {}]))
        await ws.close()
        return answers

    truncated, short, unknown, still_up = run(scenario)
    assert truncated[:3] == [4, "bad-1", code]
    assert short[:3] == [4, "bad-2", code]
    assert unknown[:3] == [4, "bad-3", unknown_type]
    assert still_up[:2] == [3, "ok-1"]
    assert OcppMessage.objects.filter(charger=charger, message_type=0).count() == 5


@pytest.mark.parametrize(
    "version,action,payload,code",
    [
        (
            "1.6",
            "StatusNotification",
            {"connectorId": "one", "errorCode": "NoError", "status": "Available"},
            "TypeConstraintViolation",
        ),
        ("1.6", "StatusNotification", {"connectorId": 1, "status": "Available"}, "ProtocolError"),
        ("1.6", "Heartbeat", {"surprise": 1}, "FormationViolation"),
        (
            "2.0.1",
            "StatusNotification",
            {
                "timestamp": "2025-03-10T08:00:00Z",
                "connectorStatus": "Sleeping",
                "evseId": 1,
                "connectorId": 1,
            },
            "PropertyConstraintViolation",
        ),
        ("2.0.1", "Heartbeat", {"surprise": 1}, "FormatViolation"),
    ],
)
def test_schema_violation_gets_callerror_and_connection_stays_up(
    charger, version, action, payload, code
):
    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity, protocols=[f"ocpp{version}"])
        error = await exchange(ws, [2, "v-1", action, payload])
        ok = await exchange(ws, [2, "v-2", "Heartbeat", {}])
        await ws.close()
        return error, ok

    error, ok = run(scenario)
    assert error[:3] == [4, "v-1", code]
    assert ok[:2] == [3, "v-2"]
    assert not Connector.objects.filter(charger=charger).exists()


def test_unknown_action_gets_not_implemented_unsupported_one_not_supported(charger):
    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity)
        not_handled = await exchange(ws, [2, "a-1", "Reset", {"type": "Hard"}])
        unknown = await exchange(ws, [2, "a-2", "Teleport", {}])
        await ws.close()
        return not_handled, unknown

    not_handled, unknown = run(scenario)
    # OCPP-J 1.6 §4.2.3 and 2.0.1 §4.3: NotImplemented = "Requested Action is not known by
    # receiver", NotSupported = "Requested Action is recognized but not supported".
    assert not_handled[2] == "NotSupported" and unknown[2] == "NotImplemented"


# --- transaction ids, configuration -------------------------------------------------------------


def test_16_transaction_ids_unique_across_two_gateways(community, site):
    chargers = [
        builders.make_charger(community, site=site, identity=f"CP-TX-{i}") for i in range(2)
    ]

    async def starts(url, identity, n, first=0):
        ws = await raw_client(url, identity)
        ids = []
        for i in range(first, first + n):
            answer = await exchange(
                ws,
                [
                    2,
                    f"s{i}",
                    "StartTransaction",
                    {
                        "connectorId": 1,
                        "idTag": "X1",
                        "meterStart": i,
                        "timestamp": f"2025-03-10T08:00:{i:02d}Z",
                    },
                ],
            )
            ids.append(answer[2]["transactionId"])
        await ws.close()
        return ids

    async def main():
        gateways = []
        for name in ("gw-a", "gw-b"):
            small = Decisions(id_block=5)
            gateways.append(
                Gateway(
                    host="127.0.0.1",
                    port=0,
                    instance_id=name,
                    batcher=EventBatcher(flush_seconds=0.05),
                    decisions=small,
                )
            )
        for gw in gateways:
            await gw.start()
        try:
            results = await asyncio.gather(
                starts(gateways[0].url, chargers[0].identity, 12),
                starts(gateways[1].url, chargers[1].identity, 12),
            )
        finally:
            for gw in gateways:
                await gw.stop()
        # A restarted gateway continues after the blocks already handed out.
        restarted = Gateway(
            host="127.0.0.1",
            port=0,
            batcher=EventBatcher(flush_seconds=0.05),
            decisions=Decisions(id_block=5),
        )
        async with restarted:
            results.append(await starts(restarted.url, chargers[0].identity, 2, first=20))
        return results

    a, b, after_restart = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    everything = a + b + after_restart
    assert len(set(everything)) == len(everything) == 26
    assert min(after_restart) > max(a + b)
    assert ChargingSession.objects.count() == 26


def test_configuration_read_in_full_at_first_connection_checked_at_later_boots(charger):
    async def first(gw):
        async with connect_charger(gw.url, charger.identity, "1.6") as cp:
            await cp.boot()
            await until(lambda: cp.count("ChangeConfiguration") == 4)
            await configured_and_recorded(gw, charger.identity)
            return dict(cp.configuration), cp.received[0]

    configuration, read = run(first)
    assert read == ("GetConfiguration", {})  # the whole configuration, at first connection
    assert configuration == {
        "HeartbeatInterval": "120",
        "MeterValueSampleInterval": "30",
        "MeterValuesSampledData": (
            "Energy.Active.Import.Register,Power.Active.Import,Current.Import"
        ),
        "StopTxnSampledData": "Energy.Active.Import.Register",
    }
    c = Charger.objects.get(pk=charger.pk)
    assert c.configured_at is not None
    assert c.configuration["HeartbeatInterval"] == "120"
    commands = ChargerCommand.objects.filter(charger=c)
    assert commands.count() == 5
    assert set(commands.values_list("status", flat=True)) == {"accepted"}

    async def second(gw):
        async with connect_charger(
            gw.url, charger.identity, "1.6", configuration=configuration
        ) as cp:
            await cp.boot(firmware="1.0.0")
            await until(lambda: cp.count("GetConfiguration") == 1)
            await cp.heartbeat()
            await asyncio.sleep(0.2)
            return cp.received

    # Configured, firmware known since the first boot, settings kept: only the profile's keys
    # (and the smart-charging keys power management needs) are read back, nothing is set, and
    # the read is no command row.
    Charger.objects.filter(pk=charger.pk).update(firmware_version="1.0.0")
    received = run(second)
    assert received == [
        (
            "GetConfiguration",
            {
                "key": [
                    *configuration,
                    "ChargeProfileMaxStackLevel",
                    "ChargingScheduleAllowedChargingRateUnit",
                ]
            },
        ),
    ]
    assert ChargerCommand.objects.filter(charger=c).count() == 5


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_factory_reset_charger_is_reconfigured_at_its_next_boot(charger, version):
    """Same firmware, configuration lost (factory reset, replaced unit): the check at boot
    finds the profile's settings changed and sets them again."""
    Charger.objects.filter(pk=charger.pk).update(
        ocpp_version=version, configured_at=timezone.now(), firmware_version="1.0.0"
    )

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, version) as cp:  # factory settings
            await cp.boot(firmware="1.0.0")
            setter = "ChangeConfiguration" if version == "1.6" else "SetVariables"
            await until(lambda: cp.count(setter) == (4 if version == "1.6" else 1))
            await configured_and_recorded(gw, charger.identity)
            return dict(cp.configuration), [action for action, _ in cp.received]

    configuration, actions = run(scenario)
    if version == "1.6":
        assert actions[0] == "GetConfiguration" and actions.count("GetConfiguration") == 1
        assert configuration["MeterValueSampleInterval"] == "30"
        assert configuration["HeartbeatInterval"] == "120"
    else:
        assert actions == ["GetVariables", "SetVariables"]  # no full report again
        assert configuration["SampledDataCtrlr/TxUpdatedInterval"] == "30"
        assert configuration["OCPPCommCtrlr/HeartbeatInterval"] == "120"
    stored = Charger.objects.get(pk=charger.pk).configuration
    assert stored  # what was set is recorded on the charger
    assert set(ChargerCommand.objects.filter(charger=charger).values_list("status", flat=True)) == {
        "accepted"
    }


def test_201_configuration_reads_report_and_sets_variables(charger):
    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "2.0.1") as cp:
            await cp.boot()
            await until(lambda: cp.count("SetVariables") == 1)
            await cp.wait_owned()  # the NotifyReport parts the charger sends
            await configured_and_recorded(gw, charger.identity)
            return dict(cp.configuration), cp.count("GetBaseReport")

    configuration, reports = run(scenario)
    assert reports == 1
    assert configuration["SampledDataCtrlr/TxUpdatedInterval"] == "30"
    assert configuration["SampledDataCtrlr/TxEndedMeasurands"] == "Energy.Active.Import.Register"
    assert configuration["OCPPCommCtrlr/HeartbeatInterval"] == "120"
    c = Charger.objects.get(pk=charger.pk)
    assert c.configured_at is not None
    # NotifyReport parts (the values before) then what SetVariables applied.
    assert c.configuration["SampledDataCtrlr/TxUpdatedInterval"] == "30"
    assert set(ChargerCommand.objects.filter(charger=c).values_list("action", "status")) == {
        ("GetBaseReport", "accepted"),
        ("SetVariables", "accepted"),
    }


def test_unanswered_command_is_recorded_timed_out(charger):
    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity)
        await exchange(
            ws, [2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]
        )
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))  # GetConfiguration: ignored
        second = json.loads(await asyncio.wait_for(ws.recv(), 5))  # next one after the timeout
        await ws.close()
        return first, second

    first, second = run(scenario, response_timeout=0.3)
    assert first[2] == "GetConfiguration" and second[2] == "ChangeConfiguration"
    command = ChargerCommand.objects.get(charger=charger, action="GetConfiguration")
    assert command.status == ChargerCommand.Status.TIMED_OUT
    # The message log names the action of answers too.
    assert OcppMessage.objects.filter(
        charger=charger, direction="out", message_type=3, action="BootNotification"
    ).exists()


def test_registry_in_redis_while_connected(charger, settings):
    client = redis_client(settings)
    key = f"sparklin:gateway:charger:{charger.identity}"

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "1.6") as cp:
            await cp.heartbeat()
            await until(lambda: client.get(key) is not None)
            during = await asyncio.to_thread(client.get, key)
            ttl = await asyncio.to_thread(client.ttl, key)
        await until(lambda: client.get(key) is None)
        return during, ttl

    during, ttl = run(scenario, instance_id="gw-test")
    assert during.decode().startswith("gw-test|") and 0 < ttl <= 90
    assert client.get(key) is None


def test_sqlite_busy_is_retried_quietly_by_every_gateway_database_call(caplog, monkeypatch):
    """The gateway's one way to the database (`db_call`) waits out SQLite's "database is
    locked" without a warning or a traceback; a lost connection is still reported."""
    import sqlite3

    from django.db import OperationalError

    from ocpp_gateway import decisions

    monkeypatch.setattr(decisions.time, "sleep", lambda s: None)
    calls = []

    def busy_twice():
        calls.append(1)
        if len(calls) <= 2:
            error = OperationalError("database is locked")
            error.__cause__ = sqlite3.OperationalError("database is locked")
            raise error
        return "done"

    with caplog.at_level("DEBUG", logger="ocpp_gateway"):
        assert decisions._with_fresh_connection(busy_twice) == "done"
    assert len(calls) == 3 and not caplog.records

    lost = []

    def connection_lost():
        lost.append(1)
        if len(lost) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return "again"

    with caplog.at_level("WARNING", logger="ocpp_gateway"):
        assert decisions._with_fresh_connection(connection_lost) == "again"
    assert any("reconnecting" in r.getMessage() for r in caplog.records)
