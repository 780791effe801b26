"""`python -m bench.lag [--chargers N] [--minutes M]`: how far PostgreSQL is behind the chargers.

The production path, each piece its own process: `manage.py run_gateway` → RabbitMQ (durable
queue, publisher confirms) → one Celery worker → PostgreSQL. N simulated chargers (half OCPP
1.6J, half 2.0.1; a lean raw-websocket client, not the `ocpp` library, so that the client is
not the bottleneck) connect over ~a minute, then each sends meter values every 60 s (as the
product configures them), its status, and now and then a whole transaction.

Measured:
- message→row lag: for every meter sample the charger got an answer for, the time between
  the sample's timestamp (set when the charger sent it) and the moment its row was visible in
  PostgreSQL, seen by a poller that reads new `MeterSample` rows every 0.1 s (so the figures
  are at most 0.1 s pessimistic); p50/p95/p99/max;
- events/s: messages answered by the gateway per second, and sample rows written per second;
- the answer latency of the messages the gateway makes durable before answering.
Goal (issue 7): p99 ≤ 2 s at 10,000 chargers. Needs PostgreSQL, Redis and RabbitMQ
(DATABASE_URL, REDIS_URL, CELERY_BROKER_URL); creates and drops its own database
`<name>_bench_lag` (after the database DATABASE_URL names) and uses its own RabbitMQ queue name, purged before and after.

`LeanCharger` is also the client of the fault tests (tests/e2e/test_faults.py): it records
exactly which messages were answered, so a test can compare them with the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import cpu_seconds, free_port, raise_open_files, wait_for_port
from sparklin.celery import worker_command

ROOT = Path(__file__).resolve().parent.parent
ENERGY = "Energy.Active.Import.Register"


def now_ms() -> float:
    """The time in seconds, cut to whole milliseconds (what an OCPP timestamp carries), so a
    sample's timestamp and the one read back from PostgreSQL compare exactly."""
    return time.time_ns() // 1_000_000 / 1000


def iso(ts: float) -> str:
    """OCPP timestamp with milliseconds (UTC, Z)."""
    ms = round(ts * 1000)
    whole = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{ms % 1000:03d}Z"


class CallError(Exception):
    """The central system answered a CALL with a CALLERROR."""


@dataclass
class Answered:
    """What a charger got answers for: the facts a test compares with PostgreSQL."""

    starts: dict[str, int] = field(default_factory=dict)  # transaction id → meter start (Wh)
    stops: dict[str, int] = field(default_factory=dict)  # transaction id → meter stop (Wh)
    samples: list[tuple[str, float, int]] = field(default_factory=list)  # (tx, sent at, Wh)
    errors: int = 0  # CALLERRORs and unanswered calls (the charger retries those)


class LeanCharger:
    """One charger over a raw websocket: JSON frames, one outstanding CALL at a time (as OCPP
    requires), and plain answers to the central system's calls. Records what was answered."""

    _ids = itertools.count()

    def __init__(
        self,
        url: str,
        identity: str,
        version: str = "1.6",
        *,
        register_wh: int | None = None,
        timeout: float = 30,
    ):
        self.url = url.rstrip("/") + "/" + identity
        self.identity = identity
        self.version = "2.0.1" if version.startswith("2") else "1.6"
        self.register_wh = register_wh if register_wh is not None else random.randint(1, 9) * 10**5
        self.timeout = timeout
        self.ws = None
        self.answered = Answered()
        self.latencies: list[float] = []  # answer latency of durable messages (s)
        self._pending: dict[str, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self._seq = 0
        self.calls = 0  # CALLs answered (any action)

    # --- connection -------------------------------------------------------------------------
    async def connect(self, open_timeout: float = 30) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(
            self.url,
            subprotocols=[f"ocpp{self.version}"],
            compression=None,
            open_timeout=open_timeout,
            ping_interval=None,
            max_queue=64,
        )
        self._reader = asyncio.create_task(self._read(), name=f"lean-{self.identity}")

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self.ws, self._reader = None, None

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                kind, uid = frame[0], frame[1]
                if kind == 2:
                    await self.ws.send(json.dumps([3, uid, self._answer(frame[2], frame[3])]))
                    continue
                future = self._pending.pop(uid, None)
                if future is None or future.done():
                    continue
                if kind == 3:
                    future.set_result(frame[2])
                else:
                    future.set_exception(CallError(f"{frame[2]}: {frame[3]}"))
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
            self._pending.clear()

    def _answer(self, action: str, payload: dict) -> dict:
        """What a cooperative charger answers to the central system's calls."""
        if action == "GetConfiguration":
            return {"configurationKey": [], "unknownKey": payload.get("key") or []}
        if action == "SetVariables":
            return {
                "setVariableResult": [
                    {
                        "attributeStatus": "Accepted",
                        "component": item["component"],
                        "variable": item["variable"],
                    }
                    for item in payload.get("setVariableData", [])
                ]
            }
        if action == "GetBaseReport":
            return {"status": "NotSupported"}  # no report to wait for
        return {"status": "Accepted"}

    async def call(self, action: str, payload: dict) -> dict:
        """Send a CALL, return the CALLRESULT payload; raise CallError, TimeoutError or
        ConnectionError."""
        if self.ws is None:
            raise ConnectionError("not connected")
        uid = f"{self.identity}-{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._pending[uid] = future
        try:
            await self.ws.send(json.dumps([2, uid, action, payload]))
            result = await asyncio.wait_for(future, self.timeout)
            self.calls += 1
            return result
        except Exception:
            self._pending.pop(uid, None)
            if future.done() and not future.cancelled():
                future.exception()  # the reader failed it first (connection closed): seen
            raise

    # --- messages ---------------------------------------------------------------------------
    async def boot(self) -> None:
        if self.version == "1.6":
            await self.call(
                "BootNotification",
                {"chargePointVendor": "Sparklin", "chargePointModel": "Lean-16"},
            )
        else:
            await self.call(
                "BootNotification",
                {
                    "chargingStation": {"vendorName": "Sparklin", "model": "Lean-201"},
                    "reason": "PowerUp",
                },
            )

    async def status(self, status: str, connector: int = 1) -> None:
        now = iso(now_ms())
        if self.version == "1.6":
            await self.call(
                "StatusNotification",
                {"connectorId": connector, "errorCode": "NoError", "status": status},
            )
        else:
            status = {"Preparing": "Occupied", "Charging": "Occupied", "Finishing": "Occupied"}.get(
                status, status
            )
            await self.call(
                "StatusNotification",
                {
                    "timestamp": now,
                    "connectorStatus": status,
                    "evseId": 1,
                    "connectorId": connector,
                },
            )

    async def heartbeat(self) -> None:
        await self.call("Heartbeat", {})

    def _meter_value(self, sent: float, context: str) -> list[dict]:
        return [
            {
                "timestamp": iso(sent),
                "sampledValue": [
                    {
                        "value": str(self.register_wh)
                        if self.version == "1.6"
                        else float(self.register_wh),
                        "context": context,
                        "measurand": ENERGY,
                        "unit": "Wh",
                    }
                    if self.version == "1.6"
                    else {
                        "value": float(self.register_wh),
                        "context": context,
                        "measurand": ENERGY,
                        "unitOfMeasure": {"unit": "Wh"},
                    }
                ],
            }
        ]

    async def _durable(self, action: str, payload: dict) -> dict:
        started = time.monotonic()
        result = await self.call(action, payload)
        self.latencies.append(time.monotonic() - started)
        return result

    async def start(self, card: str, *, sent: float | None = None, tx: str | None = None) -> str:
        """Start a transaction; returns its id once answered. A retry passes the first
        attempt's `sent` time (and, 2.0.1, its transaction id `tx`): the same message again."""
        sent = sent if sent is not None else now_ms()
        if self.version == "1.6":
            result = await self._durable(
                "StartTransaction",
                {
                    "connectorId": 1,
                    "idTag": card,
                    "meterStart": self.register_wh,
                    "timestamp": iso(sent),
                },
            )
            tx = str(result["transactionId"])
        else:
            tx = tx or uuid.uuid4().hex[:20]
            self._seq = 0
            await self._durable(
                "TransactionEvent",
                {
                    "eventType": "Started",
                    "timestamp": iso(sent),
                    "triggerReason": "Authorized",
                    "seqNo": self._next_seq(),
                    "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
                    "evse": {"id": 1, "connectorId": 1},
                    "idToken": {"idToken": card, "type": "ISO14443"},
                    "meterValue": self._meter_value(sent, "Transaction.Begin"),
                },
            )
        self.answered.starts[tx] = self.register_wh
        return tx

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq - 1

    async def meter(self, tx: str, add_wh: int = 0, *, sent: float | None = None) -> None:
        """One periodic energy sample of transaction `tx`; the register grows by `add_wh`
        first. A retry passes add_wh=0 and the first attempt's `sent`: the same sample."""
        self.register_wh += add_wh
        sent = sent if sent is not None else now_ms()
        if self.version == "1.6":
            await self._durable(
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": int(tx),
                    "meterValue": self._meter_value(sent, "Sample.Periodic"),
                },
            )
        else:
            await self._durable(
                "TransactionEvent",
                {
                    "eventType": "Updated",
                    "timestamp": iso(sent),
                    "triggerReason": "MeterValuePeriodic",
                    "seqNo": self._next_seq(),
                    "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
                    "evse": {"id": 1, "connectorId": 1},
                    "meterValue": self._meter_value(sent, "Sample.Periodic"),
                },
            )
        self.answered.samples.append((tx, sent, self.register_wh))

    async def stop(self, tx: str, card: str, *, sent: float | None = None) -> None:
        sent = sent if sent is not None else now_ms()
        if self.version == "1.6":
            await self._durable(
                "StopTransaction",
                {
                    "transactionId": int(tx),
                    "meterStop": self.register_wh,
                    "timestamp": iso(sent),
                    "reason": "Local",
                    "idTag": card,
                },
            )
        else:
            await self._durable(
                "TransactionEvent",
                {
                    "eventType": "Ended",
                    "timestamp": iso(sent),
                    "triggerReason": "StopAuthorized",
                    "seqNo": self._next_seq(),
                    "transactionInfo": {
                        "transactionId": tx,
                        "chargingState": "Idle",
                        "stoppedReason": "Local",
                    },
                    "evse": {"id": 1, "connectorId": 1},
                    "idToken": {"idToken": card, "type": "ISO14443"},
                    "meterValue": self._meter_value(sent, "Transaction.End"),
                },
            )
        self.answered.stops[tx] = self.register_wh


async def retrying(charger: LeanCharger, step, *, attempts: int = 60, pause: float = 0.5):
    """Run one message until it is answered, as a charger retries a transaction message that
    got no answer or a CALLERROR: reconnecting (and booting) when the connection dropped.
    Returns the step's result; raises after `attempts`."""
    for attempt in range(attempts):
        try:
            if charger.ws is None:
                await charger.connect()
                await charger.boot()
            return await step()
        except (CallError, TimeoutError, ConnectionError, OSError) as exc:
            charger.answered.errors += 1
            if not isinstance(exc, CallError):
                await charger.close()
        except Exception:  # the websocket closed (ConnectionClosed) or the handshake failed
            charger.answered.errors += 1
            await charger.close()
        await asyncio.sleep(pause * min(attempt + 1, 4))
    raise RuntimeError(f"{charger.identity}: no answer after {attempts} attempts")


# --- the benchmark ---------------------------------------------------------------------------
def _setup_fleet(count: int, card: str) -> list[tuple[str, str]]:
    from django_scopes import scopes_disabled

    from billing.models import Price
    from chargers.models import ChargeCard, Charger
    from communities.models import Community, Site

    with scopes_disabled():
        community = Community.objects.create(name="Lag bench", slug="lag-bench")
        site = Site.objects.create(community=community, name="Parking")
        Price.objects.create(community=community, price_per_kwh="0.2500", valid_from="2020-01-01")
        ChargeCard.objects.create(community=community, uid=card, name="Bench card")
        Charger.objects.bulk_create(
            [
                Charger(community=community, site=site, identity=f"LAG-{n:05d}")
                for n in range(count)
            ],
            batch_size=2000,
        )
    return [(f"LAG-{n:05d}", "1.6" if n % 2 == 0 else "2.0.1") for n in range(count)]


class RowWatcher:
    """Polls new MeterSample rows every `interval` s (its own connection, its own thread) and
    notes when each (session, timestamp) became visible."""

    def __init__(self, dsn: str, interval: float = 0.1):
        self.dsn, self.interval = dsn, interval
        self.seen: dict[tuple[str, str, int], float] = {}  # (identity, tx, ts ms) → visible at
        self.rows = 0
        self._stop = False

    def run(self) -> None:
        import psycopg

        last_id = 0
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop:
                rows = conn.execute(
                    "SELECT s.id, c.identity, cs.transaction_id, s.timestamp "
                    "FROM chargers_metersample s "
                    "JOIN chargers_chargingsession cs ON cs.id = s.session_id "
                    "JOIN chargers_charger c ON c.id = cs.charger_id "
                    "WHERE s.id > %s ORDER BY s.id",
                    [last_id],
                ).fetchall()
                now = time.time()
                for row_id, identity, tx, ts in rows:
                    last_id = max(last_id, row_id)
                    key = (identity, tx, round(ts.timestamp() * 1000))
                    self.seen.setdefault(key, now)
                self.rows += len(rows)
                time.sleep(self.interval)

    def stop(self) -> None:
        self._stop = True


class QueueWatcher:
    """Samples the depth of the events queue (RabbitMQ's count of ready messages) every
    `interval` s, and the CPU time of the processes the bench started: when the boot storm has
    drained, and who used the CPU."""

    def __init__(self, queue: str, interval: float = 0.5):
        self.queue, self.interval = queue, interval
        self.depths: list[tuple[float, int]] = []  # (time, ready messages)
        self._stop = False

    def run(self) -> None:
        from sparklin.celery import app

        with app.connection_for_write() as conn:
            channel = conn.default_channel
            while not self._stop:
                try:
                    _, ready, _ = channel.queue_declare(self.queue, durable=True, passive=True)
                except Exception:  # not declared yet
                    ready = 0
                    channel = conn.default_channel
                self.depths.append((time.time(), ready))
                time.sleep(self.interval)

    def stop(self) -> None:
        self._stop = True


def _drained_at(queue_watcher, after, answered, seen) -> float | None:
    """When the boot storm has drained: the first time after `after` when no message waited in
    the queue and every sample answered before had its row (the worker holds the messages it
    batches unacknowledged, so an empty queue alone does not say it caught up)."""
    import bisect

    done = sorted((sent, seen.get((i, tx, ms), float("inf"))) for i, tx, ms, sent in answered)
    sent_times = [sent for sent, _ in done]
    latest, prefix = 0.0, []
    for _, visible in done:
        latest = max(latest, visible)
        prefix.append(latest)
    for at, ready in queue_watcher.depths:
        if at < after or ready:
            continue
        n = bisect.bisect_left(sent_times, at)
        if n == 0 or prefix[n - 1] <= at:
            return at
    return None


def _database_cpu(dsn: str, database: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to `database` (they run on
    this machine: /proc)."""
    import psycopg

    from bench import cpu_seconds

    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [database],
            ).fetchall()
        ]
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            total += cpu_seconds(pid)
    return total


async def _drive(
    url: str,
    identity: str,
    version: str,
    card: str,
    ramp: float,
    until: float,
    period: float,
    session_share: float,
    counters: dict,
) -> LeanCharger:
    charger = LeanCharger(url, identity, version, timeout=60)
    await asyncio.sleep(random.uniform(0, ramp))
    try:
        await retrying(charger, charger.boot, attempts=5, pause=2)
        await charger.status("Available")
        counters["connected"] += 1
        counters["last_connected_at"] = time.time()
        # The steady state: a sample every `period` s per charger, phase spread at random.
        await asyncio.sleep(random.uniform(0, period))
        while time.time() < until:
            await charger.status("Preparing")
            tx = await charger.start(card)
            await charger.status("Charging")
            samples = random.randint(2, 4) if random.random() < session_share else 10**6
            for _ in range(samples):
                if time.time() >= until:
                    break
                await charger.meter(tx, add_wh=random.randint(50, 200))
                await asyncio.sleep(period)
            if time.time() >= until:
                break
            await charger.stop(tx, card)
            await charger.status("Available")
    except Exception as exc:  # counted, the bench goes on with the others
        counters["failed"] += 1
        counters.setdefault("first_error", f"{identity}: {exc!r}")
    finally:
        await charger.close()
    return charger


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _database_name(suffix: str) -> str:
    """`<database of DATABASE_URL>_<suffix>`: benchmarks of several people sharing one
    PostgreSQL server do not drop each other's database."""
    from urllib.parse import urlsplit

    name = urlsplit(os.environ.get("DATABASE_URL", "")).path.lstrip("/") or "sparklin"
    return f"{name}_{suffix}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=10_000)
    parser.add_argument("--ramp", type=float, default=60, help="seconds to connect them all")
    parser.add_argument("--steady", type=float, default=150, help="seconds measured after it")
    parser.add_argument("--period", type=float, default=60, help="meter values interval (s)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)

    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        if not os.environ.get(name):
            print(f"bench.lag needs {name} (make bench passes TEST_*_URL)", file=sys.stderr)
            return 2
    if not os.environ["CELERY_BROKER_URL"].startswith("amqp"):
        print("bench.lag measures the production path: CELERY_BROKER_URL=amqp://…")
        return 2
    limit = raise_open_files(args.chargers * 2 + 1000)

    from bench import prepare_database

    description, cleanup = prepare_database(_database_name("bench_lag"), keep=args.keep)
    queue = f"bench-lag-{uuid.uuid4().hex[:8]}"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="sparklin.settings",
        CELERY_TASK_ALWAYS_EAGER="false",
        CELERY_TASK_DEFAULT_QUEUE=queue,
    )
    import django

    django.setup()
    from django.core.management import call_command

    from sparklin.celery import app

    app.conf.task_default_queue = queue
    call_command("migrate", verbosity=0)
    card = "LAG-CARD"
    fleet = _setup_fleet(args.chargers, card)
    from django.db import connections

    dsn_url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
    connections.close_all()

    port = free_port()
    env = dict(
        os.environ,
        GATEWAY_EVENT_FLUSH_SECONDS="0.5",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"{queue}"
    logs.mkdir(exist_ok=True)
    gateway = subprocess.Popen(
        [sys.executable, "manage.py", "run_gateway", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=open(logs / "gateway.log", "w"),
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)),
    )
    worker = subprocess.Popen(
        worker_command(loglevel="INFO", queue=queue),
        cwd=ROOT,
        env=env,
        stdout=open(logs / "worker.log", "w"),
        stderr=subprocess.STDOUT,
    )
    watcher = RowWatcher(dsn_url)
    queue_watcher = QueueWatcher(queue)
    bench_database = dsn_url.rsplit("/", 1)[1]
    try:
        wait_for_port(port, 60)
        watcher_thread = threading.Thread(target=watcher.run, daemon=True)
        watcher_thread.start()
        threading.Thread(target=queue_watcher.run, daemon=True).start()
        cpu_before = {
            "gateway": cpu_seconds(gateway.pid),
            "worker": cpu_seconds(worker.pid),
            "simulator (this process)": time.process_time(),
            "PostgreSQL backends": _database_cpu(dsn_url, bench_database),
        }
        counters = {"connected": 0, "failed": 0}
        url = f"ws://127.0.0.1:{port}/ocpp/"
        started = time.time()
        until = started + args.ramp + args.steady

        async def run_all():
            return await asyncio.gather(
                *(
                    _drive(
                        url, identity, version, card, args.ramp, until, args.period, 0.3, counters
                    )
                    for identity, version in fleet
                )
            )

        print(
            f"bench.lag: {args.chargers} chargers ({description}, RabbitMQ, 1 worker), ramp "
            f"{args.ramp:.0f}s, steady {args.steady:.0f}s, meter values every {args.period:.0f}s"
        )
        chargers = asyncio.run(run_all())
        elapsed = time.time() - started
        # Let the worker catch up with the last samples (bounded), then stop polling.
        answered = [
            (c.identity, tx, round(sent * 1000), sent)
            for c in chargers
            for tx, sent, _ in c.answered.samples
        ]
        deadline = time.time() + 60
        while time.time() < deadline:
            missing = sum(1 for i, tx, ms, _ in answered if (i, tx, ms) not in watcher.seen)
            if not missing:
                break
            time.sleep(0.5)
        watcher.stop()
        watcher_thread.join(5)
        queue_watcher.stop()
        total = time.time() - started
        cpu = {
            "gateway": cpu_seconds(gateway.pid),
            "worker": cpu_seconds(worker.pid),
            "simulator (this process)": time.process_time(),
            "PostgreSQL backends": _database_cpu(dsn_url, bench_database),
        }
        # The boot storm: every charger connects, boots, reports its status and is configured
        # during the ramp; it has drained once no message waits for the worker any more.
        last_connected = counters.get("last_connected_at", started + args.ramp)
        drained = _drained_at(queue_watcher, last_connected, answered, watcher.seen)
        steady_from = max(started + args.ramp, drained or last_connected)

        def lag_of(selected):
            return [
                watcher.seen[(i, tx, ms)] - sent
                for i, tx, ms, sent in selected
                if (i, tx, ms) in watcher.seen
            ]

        lags = lag_of(a for a in answered if a[3] >= steady_from)
        storm_lags = lag_of(a for a in answered if a[3] < steady_from)
        missing = sum(1 for i, tx, ms, _ in answered if (i, tx, ms) not in watcher.seen)
        latencies = [x for c in chargers for x in c.latencies]
        durable = sum(len(c.latencies) for c in chargers)
        messages = sum(c.calls for c in chargers)
        print(f"  connected: {counters['connected']}/{args.chargers}, failed: {counters['failed']}")
        if counters.get("first_error"):
            print(f"  first failure: {counters['first_error']}")
        print(
            f"  answered messages: {messages} in {elapsed:.0f}s ({messages / elapsed:.0f} "
            f"events/s), of which transaction and meter messages (durable before answered): "
            f"{durable} ({durable / elapsed:.0f}/s)"
        )
        print(f"  sample rows written: {watcher.rows} ({watcher.rows / elapsed:.0f}/s)")
        depth = max((ready for _, ready in queue_watcher.depths), default=0)
        print(
            f"  boot storm: all {counters['connected']} connected {last_connected - started:.0f}s "
            f"after the first; queue at most {depth} messages; "
            + (
                f"drained {drained - last_connected:.1f}s after the last connection"
                if drained
                else "never drained"
            )
        )
        print(
            f"  message→row lag (steady state, after the storm drained, {len(lags)} samples): "
            f"p50 {_percentile(lags, 50):.2f}s  p95 {_percentile(lags, 95):.2f}s  "
            f"p99 {_percentile(lags, 99):.2f}s  max {max(lags, default=float('nan')):.2f}s"
        )
        buckets: dict[int, list[float]] = {}
        for i, tx, ms, sent in answered:
            if (i, tx, ms) in watcher.seen:
                buckets.setdefault(int((sent - started) // 30), []).append(
                    watcher.seen[(i, tx, ms)] - sent
                )
        print(
            "  lag p99 by 30 s of sending time: "
            + ", ".join(f"{b * 30}s {_percentile(v, 99):.1f}s" for b, v in sorted(buckets.items()))
        )
        print(
            f"  message→row lag during the storm ({len(storm_lags)} samples): "
            f"p50 {_percentile(storm_lags, 50):.2f}s  p99 {_percentile(storm_lags, 99):.2f}s  "
            f"max {max(storm_lags, default=float('nan')):.2f}s"
        )
        print(
            f"  CPU over {total:.0f}s on {os.cpu_count()} cores (load average "
            f"{os.getloadavg()[0]:.1f} at the end): "
            + ", ".join(
                f"{name} {cpu[name] - cpu_before[name]:.0f}s "
                f"({(cpu[name] - cpu_before[name]) / total:.0%} of a core)"
                for name in cpu
            )
        )
        print(
            f"  answer latency (durable messages): p50 {_percentile(latencies, 50) * 1000:.0f}ms"
            f"  p99 {_percentile(latencies, 99) * 1000:.0f}ms"
        )
        print(f"  answered samples without a row after 60 s: {missing}")
        if lags:
            verdict = "met" if _percentile(lags, 99) <= 2.0 else "NOT met"
            print(f"  goal p99 ≤ 2 s: {verdict}")
        return 0 if not missing else 1
    finally:
        watcher.stop()
        for process in (gateway, worker):
            process.terminate()
        for process in (gateway, worker):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        with contextlib.suppress(Exception):
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)
        cleanup()
        print(f"  logs: {logs}")


if __name__ == "__main__":
    sys.exit(main())
