"""`python -m bench.gateway [--cpu-chargers N] [--messages M] [--rounds R] [--idle N]
[--parts cpu,memory] [--baseline PATH]`: the OCPP gateway's CPU per message and memory per idle
connection, side by side with two reference servers the bench starts itself on the same machine
in the same run:

- **sparklin**: `manage.py run_gateway`, doing all its production work — schema validation,
  events and the message log published as Celery tasks to the broker, durable before answered;
- **library**: a bare `ocpp`-library server (its `ChargePoint` with minimal `@on` handlers, the
  library's own jsonschema validation), as an integrator would write it;
- **plain**: `websockets` + `json`, answering every CALL with an empty CALLRESULT (the floor);
- **baseline** (with `--baseline PATH`): the gateway of another checkout, e.g. a
  `git worktree` of the commit before a change, to measure the change in the same run.

CPU per message = the server process's CPU time (user + system, all its threads, from
/proc/PID/stat) during a message phase / messages answered. Every server runs for the whole CPU
part, `--cpu-chargers` chargers per version connected and booted to each; then `--rounds`
rounds, in each of which every server in turn (the order rotated from round to round) has its
chargers send `--messages` messages each, one at a time, waiting for each answer (as chargers
do) — 1.6 MeterValues, then 2.0.1 TransactionEvent (Updated, with meter values). Printed: the
median and range of the rounds, and the median of the per-round sparklin/library ratios, which a
load that comes and goes on a shared machine affects the least. Memory per idle connection = the
server's RSS delta / connections after `--idle` booted chargers connected (the open-files limit
is raised to the hard limit; the bench says when it had to connect fewer), and, for the gateway,
the Redis connections it holds then.

Needs PostgreSQL (DATABASE_URL; the bench creates and drops its own database
`<name>_bench_gateway` next to the one named there). Redis (registry, cache) is always a private
`redis-server` the bench starts on a free port (never the shared one: 19,000 connections'
registry traffic must not touch other users' Redis, and the gateway's connections are counted
there). Events go to CELERY_BROKER_URL when set, else to that private Redis. No worker runs: the
published tasks are dropped with the private broker, or with the queue of its own the bench
declares on CELERY_BROKER_URL. Not a timed test: numbers for the README and
docs/architecture.md. The reconnect storm is `python -m bench.storm`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from websockets.exceptions import InvalidHandshake

from bench import cpu_seconds, free_port, rss_kb, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = "bench-1"
SUBPROTOCOLS = ["ocpp2.0.1", "ocpp1.6"]


# --- the reference servers (run as `python -m bench.gateway --serve KIND --port P`) ------------


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def _serve_library(port: int) -> None:
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint as ChargePoint16
    from ocpp.v16 import call_result as result16
    from ocpp.v16.enums import Action as Action16
    from ocpp.v201 import ChargePoint as ChargePoint201
    from ocpp.v201 import call_result as result201
    from ocpp.v201.enums import Action as Action201
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    class Library16(ChargePoint16):
        @on(Action16.boot_notification)
        def on_boot(self, charge_point_vendor, charge_point_model, **kwargs):
            return result16.BootNotification(current_time=_now(), interval=300, status="Accepted")

        @on(Action16.heartbeat)
        def on_heartbeat(self, **kwargs):
            return result16.Heartbeat(current_time=_now())

        @on(Action16.status_notification)
        def on_status(self, connector_id, error_code, status, **kwargs):
            return result16.StatusNotification()

        @on(Action16.meter_values)
        def on_meter_values(self, connector_id, meter_value, **kwargs):
            return result16.MeterValues()

    class Library201(ChargePoint201):
        @on(Action201.boot_notification)
        def on_boot(self, charging_station, reason, **kwargs):
            return result201.BootNotification(current_time=_now(), interval=300, status="Accepted")

        @on(Action201.heartbeat)
        def on_heartbeat(self, **kwargs):
            return result201.Heartbeat(current_time=_now())

        @on(Action201.status_notification)
        def on_status(self, timestamp, connector_status, evse_id, connector_id, **kwargs):
            return result201.StatusNotification()

        @on(Action201.transaction_event)
        def on_transaction_event(
            self, event_type, timestamp, trigger_reason, seq_no, transaction_info, **kwargs
        ):
            return result201.TransactionEvent()

    async def handler(ws):
        cls = Library201 if ws.subprotocol == "ocpp2.0.1" else Library16
        cp = cls(ws.request.path.rsplit("/", 1)[-1], ws)
        try:
            await cp.start()
        except ConnectionClosed:
            pass

    async with serve(handler, "127.0.0.1", port, subprotocols=SUBPROTOCOLS, compression=None):
        await asyncio.Future()


async def _serve_plain(port: int) -> None:
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws):
        try:
            async for message in ws:
                frame = json.loads(message)
                if frame[0] == 2:
                    answer = {}
                    if frame[2] == "BootNotification":
                        answer = {"currentTime": _now(), "interval": 300, "status": "Accepted"}
                    await ws.send(json.dumps([3, frame[1], answer]))
        except ConnectionClosed:
            pass

    async with serve(handler, "127.0.0.1", port, subprotocols=SUBPROTOCOLS, compression=None):
        await asyncio.Future()


# --- the chargers -------------------------------------------------------------------------------


def meter_values_16(n: int) -> dict:
    return {
        "connectorId": 1,
        "transactionId": 1000 + n % 7,
        "meterValue": [
            {
                "timestamp": _now(),
                "sampledValue": [
                    {
                        "value": str(100_000 + n),
                        "context": "Sample.Periodic",
                        "measurand": "Energy.Active.Import.Register",
                        "location": "Outlet",
                        "unit": "Wh",
                    },
                    {"value": "7360", "measurand": "Power.Active.Import", "unit": "W"},
                    *(
                        {
                            "value": "32.0",
                            "measurand": "Current.Import",
                            "phase": phase,
                            "unit": "A",
                        }
                        for phase in ("L1", "L2", "L3")
                    ),
                ],
            }
        ],
    }


def transaction_event_201(n: int) -> dict:
    return {
        "eventType": "Updated",
        "timestamp": _now(),
        "triggerReason": "MeterValuePeriodic",
        "seqNo": n + 1,
        "transactionInfo": {"transactionId": "TX-BENCH-1", "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": _now(),
                "sampledValue": [
                    {
                        "value": 100_000 + n,
                        "context": "Sample.Periodic",
                        "measurand": "Energy.Active.Import.Register",
                        "unitOfMeasure": {"unit": "Wh"},
                    },
                    {
                        "value": 7360,
                        "measurand": "Power.Active.Import",
                        "unitOfMeasure": {"unit": "W"},
                    },
                ],
            }
        ],
    }


def _boot(version: str) -> tuple[str, dict]:
    if version == "1.6":
        return "BootNotification", {
            "chargePointVendor": "Bench",
            "chargePointModel": "B1",
            "firmwareVersion": FIRMWARE,
        }
    return "BootNotification", {
        "reason": "PowerUp",
        "chargingStation": {"vendorName": "Bench", "model": "B1", "firmwareVersion": FIRMWARE},
    }


class Charger:
    """One websocket client: sends CALLs one at a time, answers what the server asks (the
    configuration check at boot) with the values Sparklin's profile wants."""

    __slots__ = ("ws", "version", "waiting", "reader", "n", "profile")

    def __init__(self, ws, version: str, profile: dict):
        self.ws, self.version, self.profile = ws, version, profile
        self.waiting: asyncio.Future | None = None
        self.n = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        try:
            async for message in self.ws:
                frame = json.loads(message)
                if frame[0] == 2:
                    await self.ws.send(json.dumps([3, frame[1], self._answer(frame[2], frame[3])]))
                elif self.waiting is not None and not self.waiting.done():
                    self.waiting.set_result(frame)
        except Exception:
            pass

    def _answer(self, action: str, payload: dict) -> dict:
        if action == "GetConfiguration":
            keys = payload.get("key") or list(self.profile)
            return {
                "configurationKey": [
                    {"key": k, "readonly": False, "value": self.profile[k]}
                    for k in keys
                    if k in self.profile
                ]
            }
        if action == "GetVariables":
            return {
                "getVariableResult": [
                    {
                        "attributeStatus": "Accepted",
                        "attributeValue": self.profile.get(
                            f"{i['component']['name']}/{i['variable']['name']}", ""
                        ),
                        "component": i["component"],
                        "variable": i["variable"],
                    }
                    for i in payload["getVariableData"]
                ]
            }
        if action == "SetVariables":
            return {
                "setVariableResult": [
                    {
                        "attributeStatus": "Accepted",
                        "component": i["component"],
                        "variable": i["variable"],
                    }
                    for i in payload["setVariableData"]
                ]
            }
        return {"status": "Accepted"}

    async def call(self, action: str, payload: dict, timeout: float = 60) -> list:
        self.n += 1
        self.waiting = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps([2, f"m{self.n}", action, payload]))
        return await asyncio.wait_for(self.waiting, timeout)

    async def close(self):
        await self.ws.close()
        self.reader.cancel()


RETRIES = {"count": 0}


async def _connect(url: str, identity: str, version: str, profile: dict) -> Charger:
    """Connect and boot; a refused or reset handshake is retried, as a charger would."""
    from websockets.asyncio.client import connect

    for attempt in range(8):
        try:
            ws = await connect(
                url + identity,
                subprotocols=[f"ocpp{version}"],
                compression=None,
                open_timeout=120,
                ping_interval=None,
            )
            break
        except (OSError, TimeoutError, InvalidHandshake):
            if attempt == 7:
                raise
            RETRIES["count"] += 1
            await asyncio.sleep(0.5 * 2**attempt)
    charger = Charger(ws, version, profile)
    answer = await charger.call(*_boot(version))
    assert answer[0] == 3, answer
    return charger


async def _connect_all(url, identities, version, profile, wave=100) -> list[Charger]:
    chargers: list[Charger] = []
    for start in range(0, len(identities), wave):
        chargers += await asyncio.gather(
            *(_connect(url, i, version, profile) for i in identities[start : start + wave])
        )
    return chargers


# --- measuring ----------------------------------------------------------------------------------


async def _settle(pid: int, seconds: float = 2.0) -> None:
    """Wait until the server is idle (the configuration checks and event flushes are done)."""
    last = cpu_seconds(pid)
    for _ in range(60):
        await asyncio.sleep(seconds)
        now = cpu_seconds(pid)
        if now - last < 0.05 * seconds:
            return
        last = now


PHASES = {
    "1.6": ("MeterValues", meter_values_16),
    "2.0.1": ("TransactionEvent", transaction_event_201),
}


async def _phase(pid: int, chargers: list[Charger], version: str, messages: int, first: int):
    """Each charger sends `messages` messages one at a time (numbered from `first`: 2.0.1
    seqNo keeps growing over the rounds); the server's CPU time over the phase / messages."""
    action, build = PHASES[version]
    errors = 0

    async def run(charger):
        nonlocal errors
        for n in range(first, first + messages):
            answer = await charger.call(action, build(n))
            errors += answer[0] != 3

    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(run(c) for c in chargers))
    cpu1, elapsed = cpu_seconds(pid), time.perf_counter() - t0
    total = messages * len(chargers)
    return {"us": (cpu1 - cpu0) / total * 1e6, "rate": total / elapsed, "errors": errors}


async def _cpu_part(servers, identities, n, messages, rounds, profile) -> dict:
    """Every server runs for the whole part with its chargers connected and booted; then, round
    after round, each server in turn (the order rotated every round) answers one phase of each
    version. A load that comes and goes on a shared machine then weighs on every server alike,
    and each round gives its own sparklin/library ratio."""
    chargers = {}
    for s, (kind, (_pid, url)) in enumerate(servers.items()):
        for v, version in enumerate(PHASES):
            # Identities of their own per server: two gateways share the registry (the newest
            # connection of a charger wins, the other is closed).
            first = (2 * s + v) * n
            chargers[kind, version] = await _connect_all(
                url, identities[first : first + n], version, profile
            )
    for pid, _ in servers.values():
        await _settle(pid, 1.0)
    results: dict = {(kind, version): [] for kind in servers for version in PHASES}
    kinds = list(servers)
    for r in range(rounds):
        order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
        for version in PHASES:
            for kind in order:
                pid = servers[kind][0]
                await _settle(pid, 0.5)
                result = await _phase(pid, chargers[kind, version], version, messages, r * messages)
                results[kind, version].append(result)
        print(
            f"  round {r + 1}/{rounds}: "
            + "; ".join(
                f"{kind} " + "/".join(f"{results[kind, v][-1]['us']:.0f}" for v in PHASES)
                for kind in kinds
            )
            + " µs/msg (1.6/2.0.1)",
            file=sys.stderr,
        )
    for group in chargers.values():
        await asyncio.gather(*(c.close() for c in group))
    return results


async def _memory_part(url, pid, identities, profile, redis_url) -> dict:
    warm = await _connect_all(url, identities[:1], "1.6", profile)
    await _settle(pid, 1.0)
    rss0 = rss_kb(pid)
    t0 = time.perf_counter()
    chargers = warm + await _connect_all(url, identities[1:], "1.6", profile)
    connected_in = time.perf_counter() - t0
    await _settle(pid, 2.0)
    rss1 = rss_kb(pid)
    redis_connections = _redis_clients(redis_url) if redis_url else None
    await asyncio.gather(*(c.close() for c in chargers))
    return {
        "kb": (rss1 - rss0) / max(1, len(chargers) - 1),
        "rss0": rss0 / 1024,
        "rss1": rss1 / 1024,
        "seconds": connected_in,
        "redis": redis_connections,
    }


def _redis_clients(url: str) -> int:
    """Connections to the bench's private Redis other than this one: the gateway's (its
    registry pool and takeover listener, its cache; the broker's when Redis is the broker)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        own = client.client_id()
        return sum(1 for c in client.client_list() if int(c["id"]) != own)
    finally:
        client.close()


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _cell(values: list[float], digits: int = 0) -> str:
    median, low, high = _stats(values)
    return f"{median:.{digits}f} [{low:.{digits}f}–{high:.{digits}f}]"


# --- orchestration ------------------------------------------------------------------------------


def _register(count: int) -> list[str]:
    from datetime import timedelta

    from django.utils import timezone
    from django_scopes import scopes_disabled

    from chargers.models import Charger as ChargerRow
    from communities.models import Community, Site

    # A fleet in service, registered and configured long ago: rows changed in the last minute
    # are what the gateway's directory delta re-reads every few seconds (its margin for late
    # commits, ocpp_gateway.decisions.ChargerDirectory), and a fleet saved the moment before
    # the measurement would have all of it re-read during the message phase.
    long_ago = timezone.now() - timedelta(hours=1)
    with scopes_disabled():
        community = Community.objects.create(name="Gateway bench", slug="gw-bench")
        site = Site.objects.create(community=community, name="Parking")
        ChargerRow.objects.bulk_create(
            [
                ChargerRow(
                    community=community,
                    site=site,
                    identity=f"GWB-{n:05d}",
                    configured_at=long_ago,
                    firmware_version=FIRMWARE,
                    updated_at=long_ago,  # bulk_create does not call save(), which sets it
                )
                for n in range(count)
            ],
            batch_size=2000,
        )
    return [f"GWB-{n:05d}" for n in range(count)]


def _profile() -> dict:
    from ocpp_gateway.profiles import profile_16, profile_201

    values = dict(profile_16(None))
    values.update({f"{c}/{v}": value for c, v, value in profile_201(None)})
    return values


def _start_server(
    kind: str, env: dict, baseline: str | None = None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    root = ROOT
    if kind in ("sparklin", "baseline"):
        if kind == "baseline":
            root = Path(baseline or "")
        command = [sys.executable, "manage.py", "run_gateway", "--host", "127.0.0.1", "--port",
                   str(port)]  # fmt: skip
    else:
        command = [sys.executable, "-m", "bench.gateway", "--serve", kind, "--port", str(port)]
    server = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_port(port)
    return server, f"ws://127.0.0.1:{port}/ocpp/"


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)


def _private_redis() -> tuple[subprocess.Popen, str, str]:
    folder = tempfile.mkdtemp(prefix="sparklin-bench-redis-")
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--maxclients", "50000", "--dir", folder],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(port)
    return server, f"redis://127.0.0.1:{port}/0", folder


def _delete_queue(queue: str) -> None:
    from sparklin.celery import app

    try:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
    except Exception as exc:  # the bench's numbers are printed anyway
        print(f"queue {queue} not deleted: {exc}", file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--serve", choices=["library", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu-chargers", type=int, default=50)
    parser.add_argument("--messages", type=int, default=40, help="messages per charger and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle", type=int, default=19_000, help="idle connections for memory")
    parser.add_argument("--parts", default="cpu,memory")
    parser.add_argument("--servers", default="sparklin,library,plain")
    parser.add_argument(
        "--baseline",
        metavar="PATH",
        help="also measure the gateway of another checkout (e.g. a `git worktree` of the commit "
        "before a change), interleaved with the others, as server `baseline`",
    )
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(
            _serve_library(args.port) if args.serve == "library" else _serve_plain(args.port)
        )
        return 0
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("bench.gateway needs DATABASE_URL (PostgreSQL)", file=sys.stderr)
        return 2

    # One socket per charger on each side: lift the soft open-files limit (inherited by the
    # servers) to the hard one, and keep a margin for everything else.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    idle = min(args.idle, hard - 500)
    parts, servers = args.parts.split(","), args.servers.split(",")
    if args.baseline:
        servers.insert(1, "baseline")

    # Redis (the registry, the cache) is always a private server: 19,000 connections' registry
    # traffic must not touch a shared one, and the connections the gateway holds are counted
    # there. It is the broker too unless CELERY_BROKER_URL names one.
    redis, redis_url, redis_dir = _private_redis()
    os.environ["REDIS_URL"] = redis_url
    broker = "CELERY_BROKER_URL" if os.environ.get("CELERY_BROKER_URL") else "private redis-server"
    if not os.environ.get("CELERY_BROKER_URL"):
        os.environ["CELERY_BROKER_URL"] = redis_url
    from bench import prepare_database

    # Named after DATABASE_URL's database: several people benchmarking on one server each get
    # their own.
    name = urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/") or "sparklin"
    database, cleanup = prepare_database(f"{name}_bench_gateway")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    identities = _register(max(idle, args.cpu_chargers * 2 * len(servers)))
    profile = _profile()
    # A queue of its own (no worker reads it), deleted at the end: the tasks the gateway
    # publishes must neither pile up in nor be consumed from the queue of a real deployment.
    queue = f"bench-gateway-{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        CELERY_TASK_ALWAYS_EAGER="false",
        CELERY_TASK_DEFAULT_QUEUE=queue,
        LOG_LEVEL="WARNING",
    )
    cpu: dict = {}
    memory: dict[str, dict] = {}
    try:
        if "cpu" in parts:
            started = {kind: _start_server(kind, env, args.baseline) for kind in servers}
            try:
                cpu = asyncio.run(
                    _cpu_part(
                        {kind: (s.pid, url) for kind, (s, url) in started.items()},
                        identities,
                        args.cpu_chargers,
                        args.messages,
                        args.rounds,
                        profile,
                    )
                )
            finally:
                for server, _ in started.values():
                    _stop(server)
        if "memory" in parts:
            for kind in servers:
                server, url = _start_server(kind, env, args.baseline)
                try:
                    memory[kind] = asyncio.run(
                        _memory_part(
                            url,
                            server.pid,
                            identities[:idle],
                            profile,
                            redis_url if kind in ("sparklin", "baseline") else None,
                        )
                    )
                finally:
                    _stop(server)
                print(f"  memory {kind}: {memory[kind]}", file=sys.stderr)
    finally:
        _delete_queue(queue)
        cleanup()
        _stop(redis)
        shutil.rmtree(redis_dir, ignore_errors=True)

    width = 24
    print(
        f"machine   : {platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()}"
        f" · load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end"
    )
    print(f"database  : {database}; broker: {broker}; Redis: private redis-server")
    if cpu:
        print(
            f"CPU       : {args.cpu_chargers} chargers per version and server, each sending "
            f"{args.messages} messages one at a time per round, {args.rounds} rounds with the "
            "servers interleaved (order rotated); server process CPU time (user + system, all "
            "threads) / messages; median [min–max] of the rounds"
        )
        print(f"{'':30}" + "".join(f"{k:>{width}}" for k in servers))
        for version, label in (
            ("1.6", "1.6 MeterValues µs/msg"),
            ("2.0.1", "2.0.1 TransactionEvent µs/msg"),
        ):
            print(
                f"{label:30}"
                + "".join(f"{_cell([r['us'] for r in cpu[k, version]]):>{width}}" for k in servers)
            )
            print(
                f"{'  answered msg/s':30}"
                + "".join(
                    f"{_cell([r['rate'] for r in cpu[k, version]]):>{width}}" for k in servers
                )
            )
        errors = sum(r["errors"] for rounds in cpu.values() for r in rounds)
        if errors:
            print(f"CALLERROR answers: {errors} (the numbers above are not comparable)")
        if "library" in servers:
            for kind in [k for k in servers if k in ("sparklin", "baseline")]:
                for version in PHASES:
                    ratios = [
                        mine["us"] / lib["us"]
                        for mine, lib in zip(
                            cpu[kind, version], cpu["library", version], strict=True
                        )
                    ]
                    print(
                        f"{kind} / library, {version} (per round): {_cell(ratios, 2)}"
                        "   goal ≤ 0.33 (issue 14)"
                    )
    if memory:
        note = (
            ""
            if idle == args.idle
            else f" (asked {args.idle}; the hard open-files limit is {hard})"
        )
        print(f"memory    : {idle} idle booted 1.6 chargers{note}; RSS delta / connections")
        print(f"{'':30}" + "".join(f"{k:>{width}}" for k in servers))
        print(
            f"{'KB per idle connection':30}"
            + "".join(f"{memory[k]['kb']:>{width}.1f}" for k in servers)
        )
        print(
            f"{'RSS MB before → after':30}"
            + "".join(
                f"{memory[k]['rss0']:.0f} → {memory[k]['rss1']:.0f}".rjust(width) for k in servers
            )
        )
        print(
            f"{'connect + boot all, s':30}"
            + "".join(f"{memory[k]['seconds']:>{width}.1f}" for k in servers)
        )
        print(
            f"{'Redis connections held':30}"
            + "".join(
                f"{'' if memory[k]['redis'] is None else memory[k]['redis']:>{width}}"
                for k in servers
            )
        )
    print(
        "storm     : the 10,000-charger reconnect storm (time to Accepted, time visible in "
        "PostgreSQL, Redis connections during it) is `python -m bench.storm`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
