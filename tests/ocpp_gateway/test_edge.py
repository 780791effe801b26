"""The gateway's edge: surviving a database restart, the charger directory, throttles at the
upgrade, handshake failure counts, the handler's cleanup, newest-connection-wins across two
gateways. Real gateways on loopback, real clients, the engineer's PostgreSQL and Redis."""

import asyncio
import json
import logging
import socket
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connection, connections
from django.utils import timezone
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chargers.models import Charger, UnknownCharger
from ocpp_gateway import decisions as decisions_module
from ocpp_gateway.batcher import EventBatcher
from ocpp_gateway.decisions import ChargerDirectory, Decisions
from ocpp_gateway.server import Gateway
from ocpp_gateway.throttle import TokenBucket
from simulator.fleet import basic_auth, connect_charger

from .. import builders
from .test_gateway import TIMEOUT, exchange, raw_client, redis_client, run, until

# Test bodies read tenant data in the community fixture's scope (tests/conftest.py).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.GATEWAY_HEARTBEAT_INTERVAL = 120
    settings.GATEWAY_DIRECTORY_REFRESH_SECONDS = 0.2


def terminate_backends(keep_pid: int) -> int:
    """What a PostgreSQL restart or fail-over does to the gateway: every other backend of the
    test database is terminated (the test's own connection, `keep_pid`, survives). Runs on its
    own short-lived psycopg connection, from any thread."""
    import psycopg

    db = connection.settings_dict
    with psycopg.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432
    ) as conn:
        return conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s",
            [keep_pid],
        ).fetchone()[0]


async def make_charger_in_thread(community, site, identity):
    def make():
        try:
            return builders.make_charger(community, site=site, identity=identity)
        finally:
            connection.close()  # no connection left behind in the helper thread

    return await asyncio.to_thread(make)


async def status_of(gw, identity, headers=None, protocols=("ocpp1.6",)):
    """101 when the handshake opened, else the refusal's status (and the response)."""
    try:
        ws = await raw_client(gw.url, identity, protocols=protocols, headers=headers)
    except InvalidStatus as refused:
        return refused.response.status_code, refused.response
    await ws.close()
    return 101, None


# --- a database restart -------------------------------------------------------------------------


def test_gateway_survives_terminated_database_connections(community, site, individual):
    pytest.importorskip("psycopg")
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL")
    known = builders.make_charger(community, site=site, identity="CP-KNOWN")
    builders.make_card(community, holder=individual, uid="04A23B11")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        test_pid = cursor.fetchone()[0]

    async def scenario(gw):
        results = {}
        async with connect_charger(gw.url, known.identity, "1.6") as cp:
            await cp.boot()
            results["before"] = await cp.authorize("04A23B11")
            # A charger registered after the gateway started: looked up once, then kept.
            await make_charger_in_thread(community, site, "CP-LATE")
            killed = await asyncio.to_thread(terminate_backends, test_pid)
            assert killed >= 1  # the gateway's own connection was among them
            # The next handshakes and authorizations work: the gateway reconnected by itself.
            results["known"] = (await status_of(gw, "CP-KNOWN-2"))[0]
            results["late"] = (await status_of(gw, "CP-LATE"))[0]
            gw.decisions.cards.clear()  # force a database read for the card
            results["after"] = await cp.authorize("04A23B11")
        return results

    results = run(scenario)
    assert results["before"] == "Accepted" and results["after"] == "Accepted"
    assert results["known"] == 404  # an unknown identity is answered, not a 500
    assert results["late"] == 101


def test_unreachable_database_answers_from_what_is_known(
    community, site, individual, monkeypatch, caplog
):
    charger = builders.make_charger(community, site=site, identity="CP-DOWN")
    card = builders.make_card(community, holder=individual, uid="04A23B12")
    assert card.pk

    def database_down(*args, **kwargs):
        raise OperationalError("connection refused")

    async def scenario(gw):
        async with connect_charger(gw.url, charger.identity, "1.6") as cp:
            await cp.boot()
            first = await cp.authorize("04A23B12")
            gw.decisions.cards.clear()  # the short cache expired
            monkeypatch.setattr(decisions_module, "card_decision", database_down)
            monkeypatch.setattr(decisions_module, "load_charger", database_down)
            monkeypatch.setattr(decisions_module, "load_directory", database_down)
            again = await cp.authorize("04A23B12")  # last known decision
            never_seen = await cp.authorize("NEVER-SEEN")
        # Known chargers still connect (directory); an unknown identity is told to retry.
        known = (await status_of(gw, "CP-DOWN"))[0]
        unknown, response = await status_of(gw, "CP-NOT-IN-DIRECTORY")
        return first, again, never_seen, known, unknown, response.headers.get("Retry-After")

    with caplog.at_level(logging.WARNING, logger="ocpp_gateway"):
        first, again, never_seen, known, unknown, retry = run(scenario)
    assert (first, again, never_seen) == ("Accepted", "Accepted", "Invalid")
    assert known == 101
    assert unknown == 503 and retry == "10"
    assert "answered from its last known decision" in caplog.text
    assert not UnknownCharger.objects.filter(identity="CP-NOT-IN-DIRECTORY").exists()


# --- the directory ------------------------------------------------------------------------------


def test_known_chargers_connect_without_a_query_and_changes_arrive_by_delta(
    community, site, monkeypatch
):
    chargers = [
        builders.make_charger(community, site=site, identity=f"CP-DIR-{n:02d}") for n in range(20)
    ]
    lookups = []
    real_load = decisions_module.load_charger

    def counted(identity):
        lookups.append(identity)
        return real_load(identity)

    monkeypatch.setattr(decisions_module, "load_charger", counted)

    async def scenario(gw):
        statuses = await asyncio.gather(*(status_of(gw, c.identity) for c in chargers))
        # A password set in the portal (a save()) reaches the directory by delta.
        protected = chargers[0]
        protected.password_hash = "md5$salt$00000000000000000000000000000000"
        await sync_to_async(protected.save)(update_fields=["password_hash"])
        await until(lambda: gw.decisions.directory.by_identity[protected.identity]["password_hash"])
        refused = (await status_of(gw, protected.identity))[0]
        # A new charger is accepted at once (one lookup), an unknown one refused once looked up.
        await make_charger_in_thread(community, site, "CP-NEW")
        new = (await status_of(gw, "CP-NEW"))[0]
        return [s for s, _ in statuses], refused, new

    statuses, refused, new = run(scenario)
    assert statuses == [101] * 20
    assert refused == 401
    assert new == 101
    assert lookups == ["CP-NEW"]  # no query for the twenty known chargers


def test_a_fleet_unchanged_since_its_import_is_not_read_again_at_each_delta(community, site):
    """The delta starts from the previous read (less the margin), not from the newest
    `updated_at` seen: chargers imported an hour ago are read once, at load, not every few
    seconds; a change is read by the next delta."""
    chargers = [
        builders.make_charger(community, site=site, identity=f"CP-OLD-{n:02d}") for n in range(5)
    ]
    Charger.objects.filter(pk__in=[c.pk for c in chargers]).update(
        updated_at=timezone.now() - timedelta(hours=1)
    )
    directory = ChargerDirectory()

    async def scenario():
        loaded = await directory.load()
        unchanged = await directory.refresh()
        chargers[0].password_hash = "md5$salt$00000000000000000000000000000000"
        await sync_to_async(chargers[0].save)(update_fields=["password_hash"])
        changed = await directory.refresh()
        await sync_to_async(connections.close_all)()  # the executor thread's connection
        return loaded, unchanged, changed

    loaded, unchanged, changed = asyncio.run(scenario())
    assert loaded == 5
    assert unchanged == 0  # was 5 at every refresh: the hour-old rows were re-read
    assert changed == 1
    assert directory.by_identity["CP-OLD-00"]["password_hash"].startswith("md5$")


def test_worker_saves_of_live_columns_do_not_move_updated_at(charger):
    before = Charger.objects.with_scopes_disabled().get(pk=charger.pk).updated_at
    charger.connected = True
    charger.save(update_fields=["connected", "last_seen"])
    assert Charger.objects.with_scopes_disabled().get(pk=charger.pk).updated_at == before
    charger.firmware_version = "2.0"
    charger.save(update_fields=["firmware_version"])
    assert Charger.objects.with_scopes_disabled().get(pk=charger.pk).updated_at > before


# --- throttles ----------------------------------------------------------------------------------


def test_password_guessing_hits_the_throttle(community, site):
    builders.make_charger(community, site=site, identity="CP-PW", password="right-one")

    async def scenario(gw):
        statuses, retry_after = [], None
        # The user name must be the identity, even with the right password.
        wrong_user = await status_of(gw, "CP-PW", {"Authorization": basic_auth("x", "right-one")})
        honest = await status_of(gw, "CP-PW", {"Authorization": basic_auth("CP-PW", "right-one")})
        for n in range(175):
            status, response = await status_of(
                gw, "CP-PW", {"Authorization": basic_auth("CP-PW", f"guess-{n}")}
            )
            statuses.append(status)
            if status == 429 and retry_after is None:
                retry_after = response.headers.get("Retry-After")
        # The honest charger, known to this gateway, is not locked out by the attacker.
        after = await status_of(gw, "CP-PW", {"Authorization": basic_auth("CP-PW", "right-one")})
        return wrong_user[0], honest[0], statuses, retry_after, after[0]

    wrong_user, honest, statuses, retry_after, after = run(scenario)
    assert wrong_user == 401 and honest == 101
    assert statuses[:9] == [401] * 9  # 10 failures per identity, the first spent above
    assert set(statuses[9:]) == {429}
    assert int(retry_after) >= 1
    assert after == 101
    refusal = UnknownCharger.objects.get(identity="CP-PW", reason="bad_password")
    assert refusal.attempts == 10


def test_guesses_across_identities_are_throttled_per_address(community, site):
    for n in range(40):
        builders.make_charger(community, site=site, identity=f"CP-G{n:02d}", password="pw")

    async def scenario(gw):
        statuses = []
        for n in range(40):
            headers = {"Authorization": basic_auth(f"CP-G{n:02d}", "wrong")}
            statuses.append((await status_of(gw, f"CP-G{n:02d}", headers))[0])
        return statuses

    statuses = run(scenario)
    assert statuses[:30] == [401] * 30 and set(statuses[30:]) == {429}


def test_refusals_are_rate_limited_per_address_before_any_work(db, monkeypatch):
    lookups = []
    real_load = decisions_module.load_charger
    monkeypatch.setattr(
        decisions_module, "load_charger", lambda i: lookups.append(i) or real_load(i)
    )

    async def scenario(gw):
        return [(await status_of(gw, f"SCAN-{n:04d}"))[0] for n in range(60)]

    statuses = run(scenario)
    assert statuses[:20] == [404] * 20 and set(statuses[20:]) == {429}
    assert len(lookups) == 20
    assert UnknownCharger.objects.count() == 20


def test_token_bucket_refills_and_stays_bounded():
    now = [0.0]
    bucket = TokenBucket(capacity=2, rate=0.5, max_keys=3, clock=lambda: now[0])
    assert bucket.retry_after("a") == 0
    bucket.take("a")
    bucket.take("a")
    assert bucket.retry_after("a") == 2
    now[0] += 2
    assert bucket.retry_after("a") == 0
    for key in "bcde":
        bucket.take(key)
    assert len(bucket) == 3


def test_unknown_chargers_are_aged_out_and_capped(db):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    for n in range(10):
        UnknownCharger.objects.create(identity=f"U{n}", last_seen=now - timedelta(hours=n))
    UnknownCharger.objects.create(identity="OLD", last_seen=now - timedelta(days=40))
    deleted = UnknownCharger.objects.purge(keep=4, days=30)
    assert deleted == 7
    assert sorted(UnknownCharger.objects.values_list("identity", flat=True)) == [
        "U0",
        "U1",
        "U2",
        "U3",
    ]


def test_purge_task_is_scheduled_and_applies_the_settings(db, settings):
    from chargers.tasks import purge_unknown_chargers

    assert any(
        entry["task"] == "chargers.tasks.purge_unknown_chargers"
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
    )
    settings.UNKNOWN_CHARGER_MAX, settings.UNKNOWN_CHARGER_DAYS = 2, 30
    for n in range(5):
        UnknownCharger.objects.create(identity=f"P{n}")
    assert purge_unknown_chargers.delay().get() == 3
    assert UnknownCharger.objects.count() == 2


# --- handshake failures, counted ----------------------------------------------------------------


def test_handshake_failures_are_counted_by_reason(db):
    async def scenario(gw):
        await status_of(gw, "NOBODY")
        # A client that connects and hangs up before any request.
        _, port = gw._server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        # A client that never finishes its request: the open timeout.
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(b"GET /ocpp/X HTTP/1.1\r\nHost: x\r\n")
        await until(lambda: gw.stats.total["reset"] >= 1 and gw.stats.total["timeout"] >= 1, 5)
        stalled.close()
        # Not HTTP at all.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HELLO THERE\r\n\r\n")
        await reader.read()
        writer.close()
        await until(lambda: gw.stats.total["invalid"] >= 1, 5)
        return dict(gw.stats.total), gw.stats.summary()

    totals, summary = run(scenario, open_timeout=0.5)
    assert totals["http_404"] == 1 and totals["reset"] >= 1 and totals["timeout"] >= 1
    assert totals["invalid"] == 1
    assert "http_404 1" in summary


# --- the handler's cleanup ----------------------------------------------------------------------


def test_hang_up_during_first_configuration_still_cleans_up(charger, settings, caplog):
    client = redis_client(settings)
    key = f"sparklin:gateway:charger:{charger.identity}"

    async def scenario(gw):
        ws = await raw_client(gw.url, charger.identity)
        boot = [
            2,
            "boot-1",
            "BootNotification",
            {"chargePointVendor": "Spark", "chargePointModel": "S1"},
        ]
        answer = await exchange(ws, boot)
        assert answer[2]["status"] == "Accepted"
        # The gateway starts configuring the charger: it hangs up instead of answering.
        call = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert call[0] == 2
        await until(lambda: client.get(key) is not None)
        await ws.close()
        await until(lambda: not gw.connections and client.get(key) is None)
        await until(lambda: gw.batcher.pending == 0)

    with caplog.at_level(logging.INFO):
        run(scenario)
    assert "connection handler failed" not in caplog.text
    assert Charger.objects.with_scopes_disabled().get(pk=charger.pk).connected is False


# --- several gateways ---------------------------------------------------------------------------


def test_newest_connection_wins_across_two_gateways(charger, settings):
    client = redis_client(settings)
    key = f"sparklin:gateway:charger:{charger.identity}"

    async def main():
        a = Gateway(
            host="127.0.0.1",
            port=0,
            batcher=EventBatcher(flush_seconds=0.05),
            decisions=Decisions(),
            instance_id="gw-a",
        )
        b = Gateway(
            host="127.0.0.1",
            port=0,
            batcher=EventBatcher(flush_seconds=0.05),
            decisions=Decisions(),
            instance_id="gw-b",
        )
        async with a, b:
            old = await raw_client(a.url, charger.identity)
            await until(lambda: (client.get(key) or b"").startswith(b"gw-a|"))
            new = await raw_client(b.url, charger.identity)
            await until(lambda: (client.get(key) or b"").startswith(b"gw-b|"))
            # Gateway A closes its stale socket, without recording a disconnection.
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(old.recv(), 5)
            await until(lambda: charger.identity not in a.connections)
            assert charger.identity in b.connections
            holder = await b.registry.holder(charger.identity)
            read = sync_to_async(
                lambda: (
                    Charger.objects.with_scopes_disabled()
                    .values_list("connected", "gateway")
                    .get(pk=charger.pk)
                )
            )
            state = None
            async with asyncio.timeout(8):
                while state != (True, "gw-b"):
                    await asyncio.sleep(0.1)
                    state = await read()
            await asyncio.sleep(0.5)  # nothing from gateway A undoes it afterwards
            state = await read()
            await new.close()
            return old.close_code, old.close_reason, holder, *state

    code, reason, holder, connected, gateway = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert (code, reason) == (1000, "Connected to another gateway")
    assert holder == "gw-b"
    assert connected is True and gateway == "gw-b"


# --- password hashes ----------------------------------------------------------------------------


def test_generated_passwords_get_the_fast_hash_typed_ones_stay_slow():
    from chargers import hashers

    generated = "Ab3-xY9_kLm2Qr7sTu4v"
    assert hashers.looks_generated(generated)
    assert not hashers.looks_generated("correcthorsebatterystaple")  # a phrase: one class
    assert not hashers.looks_generated("s3cret")
    encoded = hashers.hash_generated_password(generated)
    assert hashers.is_fast(encoded)
    assert hashers.check_charger_password(generated, encoded)
    assert not hashers.check_charger_password(generated[:-1] + "w", encoded)
    assert encoded != hashers.hash_generated_password(generated)  # salted
    with pytest.raises(ValueError):
        hashers.hash_generated_password("short")


def test_generated_password_accepted_and_old_slow_hash_upgraded(community, site, manager):
    from django.contrib.auth.hashers import make_password

    from chargers import hashers, services

    fresh = builders.make_charger(community, site=site, identity="CP-GEN")
    generated = services.generate_charger_password(charger=fresh, actor=manager)
    assert hashers.is_fast(Charger.objects.with_scopes_disabled().get(pk=fresh.pk).password_hash)
    # A password generated before the fast hash existed: PBKDF2 (MD5 in tests) until used.
    old_secret = "Zq8-Lm3_Yt6Wp2Rs9Nx4"
    legacy = builders.make_charger(community, site=site, identity="CP-LEGACY")
    Charger.objects.with_scopes_disabled().filter(pk=legacy.pk).update(
        password_hash=make_password(old_secret)
    )

    async def scenario(gw):
        auth = {"Authorization": basic_auth("CP-GEN", generated)}
        first = (await status_of(gw, "CP-GEN", auth))[0]
        legacy_auth = {"Authorization": basic_auth("CP-LEGACY", old_secret)}
        second = (await status_of(gw, "CP-LEGACY", legacy_auth))[0]
        gw.decisions.passwords.clear()
        again = (await status_of(gw, "CP-LEGACY", legacy_auth))[0]
        wrong = {"Authorization": basic_auth("CP-LEGACY", old_secret[:-1] + "5")}
        refused = (await status_of(gw, "CP-LEGACY", wrong))[0]
        return first, second, again, refused

    assert run(scenario) == (101, 101, 101, 401)
    assert hashers.is_fast(Charger.objects.with_scopes_disabled().get(pk=legacy.pk).password_hash)


# --- a Redis restart ----------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test's own on a free port (never the shared one), restartable."""

    def __init__(self):
        import shutil

        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip("no redis-server")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        import subprocess
        import time

        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def test_registry_survives_a_redis_restart(charger, settings, caplog):
    redis = pytest.importorskip("redis")
    private = PrivateRedis()
    private.start()
    settings.REDIS_URL = private.url
    settings.GATEWAY_REGISTRY_TTL = 3  # re-claims every second
    key = f"sparklin:gateway:charger:{charger.identity}"

    def get():
        try:
            return redis.Redis.from_url(private.url).get(key)
        except redis.exceptions.ConnectionError:
            return None

    async def scenario(gw):
        assert gw.registry.refresh_every == 1
        async with connect_charger(gw.url, charger.identity, "1.6") as cp:
            await cp.boot()
            await until(lambda: get() is not None)
            await asyncio.to_thread(private.stop)
            await asyncio.sleep(1.5)  # the registry finds Redis gone
            await cp.heartbeat()  # the charger is not affected
            await asyncio.to_thread(private.start)  # back, empty
            await until(lambda: get() is not None, timeout=8)
            return charger.identity in gw.connections

    try:
        with caplog.at_level(logging.WARNING, logger="ocpp_gateway.registry"):
            assert run(scenario) is True
    finally:
        private.stop()
    assert "registry paused" in caplog.text and "registry resumed" in caplog.text
