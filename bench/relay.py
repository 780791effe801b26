"""`python -m bench.relay [--frames N] [--gap S] [--rounds R]`: what relaying a charger's frames
to a third-party operator adds before the charger is answered (issue 12, `ocpp_gateway/upstream`).

In one process: a gateway (`ocpp_gateway.server.Gateway`, events applied in-process as in the
embedded default), a plain websocket "operator" on loopback that answers every CALL at once, and
one charger (raw websockets) that sends StatusNotification frames one at a time, `--gap`
seconds apart, so each of its frames is alone in the forwarding buffer's flush — the case where
the buffer's transaction is not shared. Phases, in rounds (the order alternates, on a shared
machine a load that comes and goes hits both): **none** (the charger has no operator) and
**monitoring** (one Monitoring operator, connected). Printed per phase: the charger's wait for
its answer (median, p95) and the process CPU per frame (all threads: the gateway's loop, its
database thread, the operator, the charger); the difference is what forwarding costs. Then the
buffer alone (`relaybuffer.Buffer`): a lone frame noted and synced, `--frames` times, wall and
CPU per frame, and how long the write itself ran in the database thread.

Needs PostgreSQL (DATABASE_URL; the bench creates and drops its own database
`<name>_bench_relay` next to the one named there). Not a timed test: numbers for
docs/architecture.md."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid

from bench import prepare_database


def _database_name(suffix: str) -> str:
    from urllib.parse import urlsplit

    name = urlsplit(os.environ.get("DATABASE_URL", "")).path.lstrip("/") or "sparklin"
    return f"{name}_{suffix}"


def _seed():
    from datetime import timedelta

    from django.utils import timezone
    from django_scopes import scopes_disabled

    from chargers.models import Charger
    from communities.models import Community, Site

    long_ago = timezone.now() - timedelta(hours=1)
    with scopes_disabled():
        community = Community.objects.create(name="Relay bench", slug="relay-bench")
        site = Site.objects.create(community=community, name="Parking")
        plain = Charger.objects.create(
            community=community, site=site, identity="RLB-NONE", ocpp_version="1.6"
        )
        relayed = Charger.objects.create(
            community=community, site=site, identity="RLB-MON", ocpp_version="1.6"
        )
        Charger.objects.filter(pk__in=[plain.pk, relayed.pk]).update(
            configured_at=long_ago, firmware_version="bench-1", updated_at=long_ago
        )
    return community, relayed


async def _operator(port_holder: list[int], calls: list[int]):
    from websockets.asyncio.server import serve

    async def handler(ws):
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):  # the gateway stopping
            async for message in ws:
                frame = json.loads(message)
                if frame[0] == 2:
                    calls[0] += 1
                    await ws.send(json.dumps([3, frame[1], {}]))

    server = await serve(handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"])
    port_holder.append(server.sockets[0].getsockname()[1])
    return server


async def _phase(charger, frames: int, gap: float) -> tuple[list[float], float]:
    waits = []
    cpu = 0.0
    for n in range(frames):
        payload = {
            "connectorId": 1,
            "errorCode": "NoError",
            "status": "Available" if n % 2 else "Preparing",
        }
        c0, t0 = time.process_time(), time.perf_counter()
        answer = await charger.call("StatusNotification", payload)
        waits.append(time.perf_counter() - t0)
        cpu += time.process_time() - c0
        assert answer[0] == 3, answer
        # The gap lets the previous frame's background work (the operator's answer, the
        # buffer's delete, events) finish; its CPU is counted with the frame.
        c0 = time.process_time()
        await asyncio.sleep(gap)
        cpu += time.process_time() - c0
    return waits, cpu / frames


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Timeline:
    """Where a relayed frame's wait goes: `Buffer.sync` (awaited before the charger is answered)
    and, inside it, the database write — from the flush's start to the write starting in the
    database thread (the hop), the write itself, back to the loop."""

    def __init__(self) -> None:
        from ocpp_gateway import relaybuffer

        self.module = relaybuffer
        self.syncs: list[float] = []
        self.writes: list[tuple[float, float, float]] = []  # asked, started, ended
        self.hops: list[float] = []
        self._write = relaybuffer.write
        self._flush = relaybuffer.Buffer._flush_now
        self._sync = relaybuffer.Buffer.sync

    def __enter__(self):
        timeline = self
        asked: list[float] = []

        def write(*args, **kwargs):
            started = time.perf_counter()
            try:
                return timeline._write(*args, **kwargs)
            finally:
                timeline.writes.append(
                    (asked[-1] if asked else started, started, time.perf_counter())
                )

        async def flush(buffer):
            asked.append(time.perf_counter())
            return await timeline._flush(buffer)

        async def sync(buffer, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return await timeline._sync(buffer, *args, **kwargs)
            finally:
                timeline.syncs.append(time.perf_counter() - t0)

        self.module.write = write
        self.module.Buffer._flush_now = flush
        self.module.Buffer.sync = sync
        return self

    def __exit__(self, *exc):
        self.module.write = self._write
        self.module.Buffer._flush_now = self._flush
        self.module.Buffer.sync = self._sync

    def clear(self) -> None:
        self.syncs.clear()
        self.writes.clear()

    def summary(self) -> dict[str, float]:
        if not self.syncs:
            return {}
        return {
            "sync_ms": statistics.median(self.syncs) * 1000,
            "writes_per_sync": len(self.writes) / len(self.syncs),
            "hop_ms": statistics.median(s - a for a, s, _ in self.writes) * 1000,
            "write_ms": statistics.median(e - s for _, s, e in self.writes) * 1000,
        }


async def _gateway_part(frames: int, gap: float, rounds: int, operator_row) -> dict:
    from bench.gateway import Charger, _connect
    from ocpp_gateway.batcher import EventBatcher
    from ocpp_gateway.decisions import Decisions
    from ocpp_gateway.server import Gateway

    port: list[int] = []
    calls = [0]
    server = await _operator(port, calls)
    await asyncio.to_thread(operator_row, f"ws://127.0.0.1:{port[0]}/ocpp")
    results: dict[str, list[tuple[list[float], float]]] = {"none": [], "monitoring": []}
    timeline = Timeline()
    gateway = Gateway(
        host="127.0.0.1", port=0, batcher=EventBatcher(flush_seconds=0.02), decisions=Decisions()
    )
    async with gateway:
        await gateway.forwarder.refresh()
        url = gateway.url
        chargers: dict[str, Charger] = {
            "none": await _connect(url, "RLB-NONE", "1.6", {}),
            "monitoring": await _connect(url, "RLB-MON", "1.6", {}),
        }
        deadline = time.monotonic() + 20
        while calls[0] == 0 and time.monotonic() < deadline:  # the operator got the boot
            await asyncio.sleep(0.05)
        assert calls[0], "the operator was never reached"
        for charger in chargers.values():  # warm-up
            await _phase(charger, 5, gap)
        with timeline:
            for r in range(rounds):
                order = list(chargers) if r % 2 == 0 else list(reversed(chargers))
                for name in order:
                    if name == "monitoring":
                        timeline.clear()  # the last round's
                    results[name].append(await _phase(chargers[name], frames, gap))
        for charger in chargers.values():
            await charger.close()
    server.close()
    await server.wait_closed()
    summary = {}
    for name, runs in results.items():
        waits = [w for ws, _ in runs for w in ws]
        summary[name] = {
            "median_ms": statistics.median(waits) * 1000,
            "p95_ms": _p(waits, 0.95) * 1000,
            "cpu_ms": statistics.median(cpu for _, cpu in runs) * 1000,
        }
    summary["monitoring"].update(timeline.summary())
    return summary


async def _buffer_part(frames: int, gap: float, operator: int, community: int) -> dict:
    from ocpp_gateway import relaybuffer
    from ocpp_gateway.relaybuffer import Buffer, Item

    in_thread: list[float] = []
    write = relaybuffer.write

    def timed_write(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return write(*args, **kwargs)
        finally:
            in_thread.append(time.perf_counter() - t0)

    relaybuffer.write = timed_write
    try:
        buffer = Buffer(limit=100_000)
        await buffer.load(operator)
        waits, cpu = [], 0.0
        for n in range(frames):
            item = Item(f"b{n}", "StatusNotification", "[2]")
            c0, t0 = time.process_time(), time.perf_counter()
            buffer.add(operator, community, item)
            await buffer.sync()
            waits.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
            await asyncio.sleep(gap)
    finally:
        relaybuffer.write = write
    return {
        "median_ms": statistics.median(waits) * 1000,
        "p95_ms": _p(waits, 0.95) * 1000,
        "cpu_ms": cpu / frames * 1000,
        "thread_ms": statistics.median(in_thread) * 1000,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    where, drop_database = prepare_database(_database_name("bench_relay"), keep=args.keep)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")
    # Events go to the broker as in production, into a queue of the bench's own that no worker
    # reads, deleted at the end; without a broker they are applied in-process (embedded mode).
    queue = f"bench-relay-{uuid.uuid4().hex[:8]}"
    broker = os.environ.get("CELERY_BROKER_URL", "")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false" if broker else "true"
    os.environ["CELERY_TASK_DEFAULT_QUEUE"] = queue

    def cleanup():
        from django.db import connections

        connections.close_all()
        if broker:
            from bench.gateway import _delete_queue

            _delete_queue(queue)
        try:
            drop_database()
        except Exception:  # the gateway's database thread may still hold its connection
            from bench import _admin

            url = os.environ["DATABASE_URL"]
            name = url.rsplit("/", 1)[1]
            admin = url.rsplit("/", 1)[0] + "/postgres"
            _admin(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    os.environ["FORWARDING_ALLOW_PRIVATE_HOSTS"] = "true"  # the operator runs on loopback
    import logging

    import django

    django.setup()
    logging.getLogger("chargers.events").setLevel(logging.ERROR)
    logging.getLogger("ocpp_gateway").setLevel(logging.WARNING)  # connections opening, closing
    from django.core.management import call_command

    from forwarding import secrets
    from forwarding.models import OperatorConnection

    try:
        call_command("migrate", verbosity=0)
        community, relayed = _seed()

        def operator_row(url):
            from django_scopes import scopes_disabled

            with scopes_disabled():
                return OperatorConnection.objects.create(
                    community=community,
                    charger=relayed,
                    name="Bench operator",
                    url=url,
                    identity=relayed.identity,
                    password_encrypted=secrets.encrypt(""),
                    role="monitoring",
                )

        load = os.getloadavg()[0]
        gateway = asyncio.run(_gateway_part(args.frames, args.gap, args.rounds, operator_row))
        operator = OperatorConnection.objects.with_scopes_disabled().get()
        buffer = asyncio.run(_buffer_part(args.frames, args.gap, operator.pk, community.pk))
        events = f"events to {queue} on the broker" if broker else "events applied in-process"
        print(f"Forwarding relay bench — {where}, {events}, load average {load:.1f} at start")
        print(
            f"{args.frames} lone StatusNotification frames × {args.rounds} rounds, {args.gap}s apart"
        )
        print("charger's wait for its answer (ms, median / p95) and process CPU per frame (ms):")
        for name, s in gateway.items():
            print(
                f"  {name:<11} {s['median_ms']:7.2f} / {s['p95_ms']:7.2f}   CPU {s['cpu_ms']:6.2f}"
            )
        m = gateway["monitoring"]
        if "sync_ms" in m:
            print(
                f"  of which the buffer's sync {m['sync_ms']:.2f} ms (median); "
                f"{m['writes_per_sync']:.1f} buffer writes per frame (its row, its delete), each "
                f"{m['hop_ms']:.2f} ms to reach the database thread + {m['write_ms']:.2f} ms there"
            )
        print(
            f"buffer alone, a lone frame added and synced: {buffer['median_ms']:.2f} / "
            f"{buffer['p95_ms']:.2f} ms, CPU {buffer['cpu_ms']:.2f} ms, "
            f"the write in the database thread {buffer['thread_ms']:.2f} ms"
        )
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
