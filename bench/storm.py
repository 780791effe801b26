"""`python -m bench.storm [--chargers N] [--deadline S]`: a reconnect storm against the gateway.

N registered, already configured 1.6J chargers (as after a gateway restart or a network outage:
they were connected before) all connect at the same moment to a freshly started gateway process,
each with a lean raw-websocket client (one TCP connection, the upgrade, BootNotification,
StatusNotification, then idle, answering pings and the gateway's calls); a refused or failed
attempt is retried after 1-3 s, as chargers do. One Celery worker process (solo pool) applies
the events, through the broker the environment names (CELERY_BROKER_URL, else REDIS_URL).

Printed: the time until every charger's boot is Accepted (and the p50/p99 per charger), the time
until every one is visible in PostgreSQL (connected, boot recorded after the storm began), the
client-side failures and retries, the gateway's own handshake-failure summary lines, its
resident memory, and the Redis connections it holds (`CLIENT LIST`, by client name).
Needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL); creates and drops `<name>_bench_storm`,
named after DATABASE_URL's database (several people benchmarking on one server each get theirs).
The hard open-files limit here is 20,000 per process: the clients (one process) and the gateway
(another) each hold N sockets.
"""

import argparse
import asyncio
import base64
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from bench import (
    cpu_seconds,
    free_port,
    prepare_database,
    raise_open_files,
    rss_mb,
    start_process,
    wait_for_port,
)
from sparklin.celery import worker_command

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "STORM-"
FIRMWARE = "1.0.0"


def _register(count: int) -> list[str]:
    from django.utils import timezone
    from django_scopes import scopes_disabled

    from chargers.models import Charger
    from communities.models import Community, Site

    now = timezone.now()
    identities = [f"{PREFIX}{n:05d}" for n in range(count)]
    with scopes_disabled():
        community = Community.objects.create(name="Storm bench", slug="storm-bench")
        site = Site.objects.create(community=community, name="Parking")
        Charger.objects.bulk_create(
            [
                Charger(
                    community=community,
                    site=site,
                    identity=identity,
                    ocpp_version="1.6",
                    firmware_version=FIRMWARE,
                    configured_at=now,
                )
                for identity in identities
            ],
            batch_size=2000,
        )
    return identities


# --- a lean websocket client (RFC 6455, text frames, client side) -------------------------------
def _frame(text: str | bytes, opcode: int = 1) -> bytes:
    payload = text.encode() if isinstance(text, str) else text
    n = len(payload)
    header = bytearray([0x80 | opcode])
    if n < 126:
        header.append(0x80 | n)
    elif n < 65536:
        header.append(0x80 | 126)
        header += n.to_bytes(2, "big")
    else:
        header.append(0x80 | 127)
        header += n.to_bytes(8, "big")
    # A zero masking key: allowed by the framing (the key is always sent), and it keeps the
    # client's CPU for the handshakes being measured rather than for XOR-ing payloads.
    header += b"\0\0\0\0"
    return bytes(header) + payload


async def _read_frame(reader) -> tuple[int, bytes]:
    b1, b2 = await reader.readexactly(2)
    n = b2 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return b1 & 0x0F, await reader.readexactly(n) if n else b""


_ANSWERS = {
    "GetConfiguration": {"configurationKey": [], "unknownKey": []},
    "ChangeConfiguration": {"status": "Accepted"},
    "TriggerMessage": {"status": "Accepted"},
}


class StormCharger:
    def __init__(self, identity: str, port: int, stats: dict):
        self.identity, self.port, self.stats = identity, port, stats
        self.accepted_after: float | None = None

    async def _call(self, reader, writer, unique_id: str, action: str, payload: dict) -> dict:
        writer.write(_frame(json.dumps([2, unique_id, action, payload])))
        return await self._read(reader, writer, unique_id, action)

    async def _read(self, reader, writer, unique_id: str | None, action: str = "") -> dict:
        """Read until the answer to `unique_id` (None: forever), answering pings and the
        gateway's own calls on the way."""
        while True:
            opcode, data = await _read_frame(reader)
            if opcode == 8:
                raise ConnectionResetError("closed by the gateway")
            if opcode == 9:
                writer.write(_frame(data, opcode=10))
                continue
            if opcode != 1:
                continue
            message = json.loads(data)
            if message[0] == 2:  # the gateway's own call (configuration): answer it
                answer = _ANSWERS.get(message[2])
                reply = (
                    [3, message[1], answer]
                    if answer is not None
                    else [4, message[1], "NotImplemented", "", {}]
                )
                writer.write(_frame(json.dumps(reply)))
            elif unique_id is not None and message[1] == unique_id:
                if message[0] != 3:
                    raise ConnectionResetError(f"{action} answered {message}")
                return message[2]

    async def run(self, t0: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            writer = None
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                key = base64.b64encode(os.urandom(16)).decode()
                writer.write(
                    (
                        f"GET /ocpp/{self.identity} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                        "Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
                    ).encode()
                )
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 120)
                status = int(head.split(b" ", 2)[1])
                if status != 101:
                    raise ConnectionRefusedError(f"http_{status}")
                boot = await self._call(
                    reader,
                    writer,
                    "b",
                    "BootNotification",
                    {
                        "chargePointVendor": "Storm",
                        "chargePointModel": "S1",
                        "firmwareVersion": FIRMWARE,
                    },
                )
                if boot.get("status") != "Accepted":
                    raise ConnectionRefusedError(f"boot_{boot.get('status')}")
                if self.accepted_after is None:
                    self.accepted_after = time.time() - t0
                await self._call(
                    reader,
                    writer,
                    "s",
                    "StatusNotification",
                    {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
                )
                # Idle and alive until the bench ends: pongs and configuration answers.
                idle = asyncio.create_task(self._read(reader, writer, None))
                stopped = asyncio.create_task(stop.wait())
                await asyncio.wait({idle, stopped}, return_when=asyncio.FIRST_COMPLETED)
                for task in (idle, stopped):
                    task.cancel()
                if stop.is_set():
                    return
                self.stats["dropped_after_boot"] += 1
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                reason = str(exc) if isinstance(exc, ConnectionRefusedError) else type(exc).__name__
                self.stats[reason] += 1
            finally:
                if writer is not None:
                    writer.close()
            if self.accepted_after is None:
                self.stats["retries"] += 1
            await asyncio.sleep(random.uniform(1.0, 3.0))  # noqa: S311 - backoff jitter


async def _storm(
    port: int, identities: list[str], pids: dict, deadline: float, visible_count
) -> dict:
    import redis.asyncio as redis_asyncio

    stats: Counter = Counter()
    chargers = [StormCharger(identity, port, stats) for identity in identities]
    stop = asyncio.Event()
    redis = redis_asyncio.Redis.from_url(os.environ["REDIS_URL"])
    redis_max = 0

    async def gateway_redis_connections() -> int:
        clients = await redis.client_list()
        return sum(1 for c in clients if c.get("name", "").startswith("sparklin-gateway-"))

    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    t0 = time.time()
    tasks = [asyncio.create_task(c.run(t0, stop)) for c in chargers]
    all_accepted = all_visible = None
    visible = 0
    try:
        while time.time() - t0 < deadline:
            await asyncio.sleep(0.5)
            redis_max = max(redis_max, await gateway_redis_connections())
            accepted = sum(1 for c in chargers if c.accepted_after is not None)
            if all_accepted is None and accepted == len(chargers):
                all_accepted = max(c.accepted_after for c in chargers)
            visible = await asyncio.to_thread(visible_count, t0)
            if all_visible is None and visible == len(chargers):
                all_visible = time.time() - t0
            if all_visible is not None and all_accepted is not None:
                break
        rss = rss_mb(pids["gateway"])
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        elapsed = time.time() - t0
        redis_now = await gateway_redis_connections()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await redis.aclose()
    times = sorted(c.accepted_after for c in chargers if c.accepted_after is not None)
    return {
        "accepted": len(times),
        "all_accepted": all_accepted,
        "all_visible": all_visible,
        "visible": visible,
        "p50": statistics.median(times) if times else None,
        "p99": times[int(len(times) * 0.99) - 1] if times else None,
        "stats": stats,
        "rss": rss,
        "cpu": cpu,
        "elapsed": elapsed,
        "redis_max": redis_max,
        "redis_now": redis_now,
    }


def _visible_counter(database_url: str):
    import psycopg

    conn = psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), autocommit=True)

    def count(t0: float) -> int:
        return conn.execute(
            "SELECT count(*) FROM chargers_charger WHERE identity LIKE %s AND connected"
            " AND last_boot_at >= to_timestamp(%s)",
            [PREFIX + "%", t0],
        ).fetchone()[0]

    return conn, count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storm", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--chargers", type=int, default=10_000)
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    if not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL", "").startswith(
        "postgres"
    ):
        print("bench.storm needs DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2
    limit = raise_open_files()
    if limit < args.chargers + 200:
        print(f"open-files limit {limit} is too low for {args.chargers} chargers", file=sys.stderr)
        return 2

    name = urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/") or "sparklin"
    database, cleanup = prepare_database(f"{name}_bench_storm")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    import redis
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    started = time.monotonic()
    identities = _register(args.chargers)
    registered_in = time.monotonic() - started
    connections.close_all()
    redis.Redis.from_url(os.environ["REDIS_URL"]).delete("celery")

    port = free_port()
    env = dict(
        os.environ,
        CELERY_TASK_ALWAYS_EAGER="false",
        LOG_LEVEL="WARNING",
        GATEWAY_INSTANCE_ID="storm",
        PYTHONUNBUFFERED="1",
    )
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    gateway_log, worker_log = (
        logs / "sparklin-storm-gateway.log",
        logs / "sparklin-storm-worker.log",
    )
    worker = start_process(worker_command(loglevel="WARNING"), env, worker_log)
    gateway = start_process(
        [sys.executable, "manage.py", "run_gateway", "--host", "127.0.0.1", "--port", str(port)],
        env,
        gateway_log,
    )
    conn, visible_count = _visible_counter(os.environ["DATABASE_URL"])
    try:
        wait_for_port(port, timeout=60)
        time.sleep(2.0)  # the worker's start-up
        result = asyncio.run(
            _storm(
                port,
                identities,
                {"gateway": gateway.pid, "worker": worker.pid, "clients": os.getpid()},
                args.deadline,
                visible_count,
            )
        )
    finally:
        conn.close()
        for process in (gateway, worker):
            process.terminate()
        for process in (gateway, worker):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        redis.Redis.from_url(os.environ["REDIS_URL"]).delete("celery")
        cleanup()

    def seconds(value):
        return f"{value:.1f} s" if value is not None else "not reached"

    summaries = [
        line.split("Handshake failures", 1)[1].strip()
        for line in gateway_log.read_text(errors="replace").splitlines()
        if "Handshake failures" in line
    ]
    stats = dict(result["stats"])
    print(
        f"machine       : {platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()}"
    )
    print(
        f"database      : {database}; {args.chargers} chargers registered in {registered_in:.1f} s"
    )
    print("worker        : one Celery worker process (solo pool), real broker")
    print(
        f"storm         : {args.chargers} configured 1.6J chargers connect at once (lean raw websocket clients)"
    )
    print(
        f"accepted      : {result['accepted']}/{args.chargers}, all in {seconds(result['all_accepted'])}"
        f" (per charger p50 {seconds(result['p50'])}, p99 {seconds(result['p99'])})"
    )
    print(
        f"in PostgreSQL : {result['visible']}/{args.chargers} connected with their boot, all in {seconds(result['all_visible'])}"
    )
    print(f"client errors : {stats or 'none'}")
    print(
        f"gateway       : RSS {result['rss']:.0f} MB; handshake failure summaries: {summaries or 'none'}"
    )
    print(
        f"redis         : {result['redis_max']} connections held by the gateway at most ({result['redis_now']} at the end)"
    )
    cpu = ", ".join(f"{name} {value:.0f} s" for name, value in result["cpu"].items())
    print(f"CPU used      : {cpu} in {result['elapsed']:.0f} s of wall time (2 cores, shared)")
    print(f"logs          : {gateway_log}, {worker_log}")
    return 0 if result["all_visible"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
