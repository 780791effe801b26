"""`python -m bench.worker [--chargers N] [--batches B] [--batch-size S] [--keep]`: how many
gateway events one worker process applies per second.

Seeds N chargers in 20 communities (with prices and cards), starts a session on every outlet,
then applies B batches of S events of a realistic mix through `chargers.events.process_events`,
the function the Celery task calls, in this one process:
- ~45 % MeterValues with 2–10 samples each (energy register, power, current, voltage, SoC),
- ~25 % message-log rows (every frame is logged),
- ~12 % heartbeats, ~10 % StatusNotification,
- ~8 % transactions (2.0.1 Updated events with samples, Ended + a new Started on the outlet).
It prints events/s, samples/s and the database round trips per batch (counted with a query
wrapper). Not a timed test: numbers for the README and docs/architecture.md.

With DATABASE_URL (PostgreSQL) it creates its own database `<name>_bench_worker` next to the
one named there, migrates it and drops it afterwards (`--keep` keeps it); without, a temporary
SQLite file."""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from bench import prepare_database

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _seed(n_chargers: int):
    from django_scopes import scopes_disabled

    from billing.models import Price
    from chargers.models import ChargeCard, Charger, Connector
    from communities.models import Community, Site

    with scopes_disabled():
        communities = [
            Community.objects.create(name=f"Bench {i}", slug=f"bench-{i}") for i in range(20)
        ]
        for c in communities:
            Price.objects.create(community=c, valid_from="2020-01-01", price_per_kwh="0.2516")
        sites = [Site.objects.create(community=c, name="Parking") for c in communities]
        chargers = Charger.objects.bulk_create(
            [
                Charger(
                    community=communities[i % 20],
                    site=sites[i % 20],
                    identity=f"BW-{i:05d}",
                    connected=True,
                    ocpp_version="2.0.1" if i % 2 else "1.6",
                )
                for i in range(n_chargers)
            ]
        )
        Connector.objects.bulk_create(
            [
                Connector(community_id=c.community_id, charger=c, evse_id=e, connector_id=e)
                for c in chargers
                for e in (1, 2)
            ]
        )
        ChargeCard.objects.bulk_create(
            [
                ChargeCard(community=communities[i % 20], uid=f"CARD{i:06d}")
                for i in range(n_chargers)
            ]
        )
    return [c.identity for c in chargers]


class Fleet:
    """The chargers' side: what each outlet is doing, and the events it sends."""

    def __init__(self, identities: list[str], seed: int = 7):
        self.rng = random.Random(seed)
        self.identities = identities
        self.clock = T0
        self.tid = itertools.count(1)
        self.meter: dict[tuple[str, int], int] = {}
        self.session: dict[tuple[str, int], str] = {}
        self.seq: dict[str, int] = {}
        self.msg = itertools.count(1)

    def _event(self, identity, kind, payload):
        return {
            "identity": identity,
            "kind": kind,
            "payload": payload,
            "received_at": self.clock.isoformat(),
        }

    def _samples(self, identity, evse, n):
        key = (identity, evse)
        self.meter[key] = self.meter.get(key, 100_000) + self.rng.randint(50, 400)
        ts = self.clock.isoformat()
        names = [
            ("Energy.Active.Import.Register", "", str(self.meter[key]), "Wh"),
            ("Power.Active.Import", "", str(self.rng.randint(3000, 11000)), "W"),
            ("Current.Import", "L1", f"{self.rng.uniform(6, 16):.1f}", "A"),
            ("Current.Import", "L2", f"{self.rng.uniform(6, 16):.1f}", "A"),
            ("Current.Import", "L3", f"{self.rng.uniform(6, 16):.1f}", "A"),
            ("Voltage", "L1-N", f"{self.rng.uniform(225, 235):.1f}", "V"),
            ("Voltage", "L2-N", f"{self.rng.uniform(225, 235):.1f}", "V"),
            ("Voltage", "L3-N", f"{self.rng.uniform(225, 235):.1f}", "V"),
            ("SoC", "", str(self.rng.randint(10, 90)), "Percent"),
            ("Temperature", "", str(self.rng.randint(20, 40)), "Celsius"),
        ]
        return [
            {
                "timestamp": ts,
                "measurand": m,
                "phase": phase,
                "context": "Sample.Periodic",
                "value": value,
                "unit": unit,
            }
            for m, phase, value, unit in names[:n]
        ]

    def _tx(self, identity, evse, kind, tid, samples=(), reason=""):
        return self._event(
            identity,
            "transaction",
            {
                "event": kind,
                "transaction_id": tid,
                "evse_id": evse,
                "connector_id": 1,
                "id_tag": f"CARD{int(identity[3:]):06d}",
                "timestamp": self.clock.isoformat(),
                "meter_wh": self.meter.get((identity, evse), 100_000),
                "reason": reason,
                "seq_no": self.seq.setdefault(tid, 0),
                "offline": False,
                "samples": list(samples),
            },
        )

    def start_all(self) -> list[dict]:
        events = []
        for identity in self.identities:
            for evse in (1, 2):
                tid = f"T{next(self.tid)}"
                self.session[(identity, evse)] = tid
                events.append(self._tx(identity, evse, "started", tid))
        return events

    def batch(self, size: int) -> list[dict]:
        events = []
        rng = self.rng
        while len(events) < size:
            self.clock += timedelta(milliseconds=20)
            identity = rng.choice(self.identities)
            evse = rng.choice((1, 2))
            key = (identity, evse)
            tid = self.session[key]
            r = rng.random()
            if r < 0.45:
                samples = self._samples(identity, evse, rng.randint(2, 10))
                if identity.endswith(("1", "3", "5", "7", "9")):  # 2.0.1: TransactionEvent
                    self.seq[tid] = self.seq.get(tid, 0) + 1
                    events.append(self._tx(identity, evse, "updated", tid, samples))
                else:
                    events.append(
                        self._event(
                            identity,
                            "meter_values",
                            {
                                "transaction_id": tid,
                                "evse_id": evse,
                                "connector_id": 1,
                                "samples": samples,
                            },
                        )
                    )
            elif r < 0.70:
                uid = f"m{next(self.msg)}"
                frame = f'[2,"{uid}","MeterValues",{{"connectorId":{evse},"meterValue":[]}}]'
                events.append(
                    self._event(
                        identity,
                        "message",
                        {
                            "direction": "in",
                            "message_type": 2,
                            "unique_id": uid,
                            "action": "MeterValues",
                            "frame": frame,
                        },
                    )
                )
            elif r < 0.82:
                events.append(self._event(identity, "heartbeat", {}))
            elif r < 0.92:
                events.append(
                    self._event(
                        identity,
                        "status",
                        {
                            "evse_id": evse,
                            "connector_id": 1,
                            "status": rng.choice(("Charging", "SuspendedEV", "Charging")),
                            "error_code": "NoError",
                            "timestamp": self.clock.isoformat(),
                        },
                    )
                )
            else:
                # A session ends and the next one starts on the outlet.
                events.append(self._tx(identity, evse, "ended", tid, reason="EVDisconnected"))
                new = f"T{next(self.tid)}"
                self.session[key] = new
                self.clock += timedelta(milliseconds=20)
                events.append(self._tx(identity, evse, "started", new))
        return events


def _database_name(suffix: str) -> str:
    """`<database of DATABASE_URL>_<suffix>`: benchmarks of several people sharing one
    PostgreSQL server do not drop each other's database."""
    from urllib.parse import urlsplit

    name = urlsplit(os.environ.get("DATABASE_URL", "")).path.lstrip("/") or "sparklin"
    return f"{name}_{suffix}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--queued", type=int, default=2000, help="messages drained by a real worker (0: none)"
    )
    parser.add_argument("--message-size", type=int, default=10, help="events per message")
    args = parser.parse_args(argv)

    where, cleanup = prepare_database(_database_name("bench_worker"), keep=args.keep)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"
    import logging

    import django

    django.setup()
    logging.getLogger("chargers.events").setLevel(logging.ERROR)
    from django.core.management import call_command
    from django.db import connection
    from django_scopes import scopes_disabled

    from chargers.events import process_events
    from chargers.models import ChargingSession, MeterSample, OcppMessage, QuarantinedEvents

    try:
        call_command("migrate", verbosity=0)
        identities = _seed(args.chargers)
        fleet = Fleet(identities)
        start = fleet.start_all()
        for i in range(0, len(start), args.batch_size):
            process_events(start[i : i + args.batch_size])
        for _ in range(3):  # warm-up
            process_events(fleet.batch(args.batch_size))

        queries = [0]

        def count(execute, sql, params, many, context):
            queries[0] += 1
            return execute(sql, params, many, context)

        batches = [fleet.batch(args.batch_size) for _ in range(args.batches)]
        n_samples = sum(
            len(e["payload"].get("samples") or ())
            for b in batches
            for e in b
            if e["kind"] in ("meter_values", "transaction")
        )
        round_trips, durations = [], []
        backend = _backend_pid(connection)
        backend_cpu0 = _cpu(backend)
        cpu0 = time.process_time()
        with connection.execute_wrapper(count):
            for b in batches:
                queries[0] = 0
                t = time.perf_counter()
                result = process_events(b)
                durations.append(time.perf_counter() - t)
                round_trips.append(queries[0] + 2)  # + BEGIN and COMMIT
                assert result["quarantined"] == 0, result
        cpu = time.process_time() - cpu0
        backend_cpu = _cpu(backend) - backend_cpu0
        total = sum(durations)
        events = args.batches * args.batch_size
        with scopes_disabled():
            rows = (
                MeterSample.objects.count(),
                OcppMessage.objects.count(),
                ChargingSession.objects.count(),
                QuarantinedEvents.objects.count(),
            )
        print(f"Worker benchmark — {platform.python_implementation()} {platform.python_version()}")
        print(f"database: {where}; {args.chargers} chargers × 2 outlets")
        print(
            f"{args.batches} batches × {args.batch_size} events ({n_samples} samples) "
            f"in {total:.2f} s, one process"
        )
        print(f"  events/s:            {events / total:,.0f}")
        print(f"  samples/s:           {n_samples / total:,.0f}")
        print(
            f"  worker CPU:          {cpu / events * 1e6:.0f} µs per event "
            f"({events / cpu:,.0f} events per CPU-second; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )
        if backend_cpu:
            print(
                f"  PostgreSQL CPU:      {backend_cpu / events * 1e6:.0f} µs per event (its "
                f"backend); worker + database: {events / (cpu + backend_cpu):,.0f} events per "
                "CPU-second, what one core would give them both"
            )
        print(
            f"  batch time:          median {statistics.median(durations) * 1000:.0f} ms, "
            f"max {max(durations) * 1000:.0f} ms"
        )
        print(
            f"  round trips / batch: median {statistics.median(round_trips):.0f}, "
            f"max {max(round_trips)}"
        )
        print(
            f"  rows now: {rows[0]} samples, {rows[1]} log rows, {rows[2]} sessions, "
            f"{rows[3]} quarantined"
        )
        if args.queued and os.environ.get("CELERY_BROKER_URL", "").startswith("amqp"):
            connection.close()
            print(
                f"real worker (solo, RabbitMQ), {args.queued} queued messages of "
                f"{args.message_size} events, as a busy gateway publishes them:"
            )
            for label, extra in (
                ("messages applied together (chargers.batching)", {}),
                (
                    "one message at a time (WORKER_EVENTS_MAX_BATCH=1)",
                    {"WORKER_EVENTS_MAX_BATCH": "1"},
                ),
            ):
                rate, per_batch, cpu_w, cpu_db = _drain(
                    fleet, args.queued, args.message_size, extra
                )
                print(f"  {label}: {rate:,.0f} events/s, {per_batch:.1f} messages per batch")
                print(
                    f"    worker process CPU {cpu_w * 1e6:.0f} µs per event, its PostgreSQL "
                    f"backend {cpu_db * 1e6:.0f} µs: {1 / (cpu_w + cpu_db):,.0f} events per "
                    "CPU-second for both"
                )
    finally:
        cleanup()
    return 0


def _backend_pid(connection) -> int | None:
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _cpu(pid: int | None) -> float:
    """CPU seconds of a local process (the PostgreSQL backend), 0 when not measurable."""
    from bench import cpu_seconds

    if pid is None:
        return 0.0
    try:
        return cpu_seconds(pid)
    except OSError:  # a database on another machine
        return 0.0


def _drain(
    fleet: Fleet, messages: int, size: int, extra: dict
) -> tuple[float, float, float, float]:
    """Publish `messages` batches of `size` events to a queue of their own, then start a real
    worker and time it from ready until every message is applied; returns (events/s, messages
    per applied batch, from the worker's log, and the CPU seconds per event of the worker
    process and of its PostgreSQL backends, from ready to the last row)."""
    import re
    import tempfile
    import uuid
    from pathlib import Path

    from django_scopes import scopes_disabled

    from bench import start_process
    from chargers.models import OcppMessage
    from ocpp_gateway.batcher import Publisher
    from sparklin.celery import app, worker_command

    queue = f"bench-worker-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    app.conf.task_always_eager = False
    batches = [fleet.batch(size)[:size] for _ in range(messages)]
    logged = sum(1 for b in batches for e in b if e["kind"] == "message")
    with scopes_disabled():
        expected = OcppMessage.objects.count() + logged
    publisher = Publisher(timeout=10)
    try:
        for batch in batches:
            publisher(batch)
    finally:
        publisher.close()
    log = Path(tempfile.mkdtemp(prefix="sparklin-bench-worker-")) / "worker.log"
    env = dict(os.environ, CELERY_TASK_ALWAYS_EAGER="false", CELERY_TASK_DEFAULT_QUEUE=queue)
    env.update(extra)
    worker = start_process(worker_command(queue=queue), env, log)
    try:
        while "ready." not in log.read_text():
            time.sleep(0.05)
        started = time.perf_counter()
        cpu0 = _cpu(worker.pid)
        # CPU of each backend of the worker: (at ready, last seen). Sampled while waiting, as
        # the worker replaces its connection after CONN_MAX_AGE; one opened after `ready`
        # counts whole.
        backends = {pid: [_cpu(pid)] * 2 for pid in _other_backends()}
        polls = 0
        with scopes_disabled():
            while OcppMessage.objects.count() < expected:
                time.sleep(0.05)
                polls += 1
                if polls % 10 == 0:
                    _sample(backends)
        elapsed = time.perf_counter() - started
        cpu_w = _cpu(worker.pid) - cpu0
        _sample(backends)
        cpu_db = sum(last - first for first, last in backends.values())
    finally:
        worker.terminate()
        worker.wait(30)
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    sizes = [int(n) for n in re.findall(r"of (\d+) messages in", log.read_text())]
    events = messages * size
    return (
        events / elapsed,
        (sum(sizes) / len(sizes) if sizes else 1.0),
        cpu_w / events,
        cpu_db / events,
    )


def _sample(backends: dict[int, list[float]]) -> None:
    """Record the CPU so far of each backend of the worker (a backend gone meanwhile keeps its
    last reading)."""
    for pid in _other_backends():
        seen = backends.setdefault(pid, [0.0, 0.0])
        seen[1] = max(seen[1], _cpu(pid))


def _other_backends() -> list[int]:
    """The PostgreSQL backends of this database other than this process's own (the worker's)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return [pid for (pid,) in cursor.fetchall()]


if __name__ == "__main__":
    sys.exit(main())
