"""`python -m bench.fuzz [--frames N] [--connections C]`: the gateway under hostile frames.

A gateway process and a Celery worker process (over the broker the environment names:
CELERY_BROKER_URL, else REDIS_URL) on a fresh database; C connections each send N frames of
every malformed class and schema-valid poison values (`simulator.fuzz`) while four honest
chargers (two 1.6J, two 2.0.1) run whole sessions. Printed: the gateway's resident memory
before and after, frames per second, what the fuzzing connections got back, the honest sessions
recorded with their energy, quarantined events, and whether both processes are still alive.
Needs PostgreSQL (DATABASE_URL); creates and drops `sparklin_bench_fuzz`."""

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from bench import free_port, prepare_database, rss_mb, start_process, wait_for_port
from sparklin.celery import worker_command

CARD = "FUZZ-BENCH-CARD"
HONEST = [("FB-H16-1", "1.6"), ("FB-H16-2", "1.6"), ("FB-H201-1", "2.0.1"), ("FB-H201-2", "2.0.1")]


def _fleet(fuzzers: list[tuple[str, str]]) -> None:
    from django_scopes import scopes_disabled

    from accounts.models import User
    from billing.models import Price
    from chargers.models import ChargeCard, Charger
    from communities.models import Community, Membership, Role, Site

    with scopes_disabled():
        community = Community.objects.create(name="Fuzz bench", slug="fuzz-bench")
        Price.objects.create(
            community=community, price_per_kwh=Decimal("0.25"), valid_from="2020-01-01"
        )
        driver = User.objects.create(phone="+33699990000", first_name="Fuzz", last_name="Driver")
        Membership.objects.create(community=community, user=driver, role=Role.INDIVIDUAL)
        ChargeCard.objects.create(community=community, holder=driver, uid=CARD, name="Fuzz")
        site = Site.objects.create(community=community, name="Parking", address="1 rue du Test")
        for identity, _ in HONEST + fuzzers:
            Charger.objects.create(community=community, site=site, identity=identity)


async def _run(url: str, fuzzers, frames: int) -> tuple[list, list]:
    from simulator.fleet import run_session
    from simulator.fuzz import fuzz

    fuzzing = [
        fuzz(url, identity, version, seed, count=frames)
        for seed, (identity, version) in enumerate(fuzzers)
    ]
    honest = [
        run_session(url, identity, version, card=CARD, energy_wh=5000, timeout=600)
        for identity, version in HONEST
    ]
    results = await asyncio.gather(*fuzzing, *honest)
    return results[: len(fuzzers)], results[len(fuzzers) :]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--frames", type=int, default=5_000, help="frames per fuzzing connection")
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("bench.fuzz needs DATABASE_URL (PostgreSQL)", file=sys.stderr)
        return 2
    fuzzers = [(f"FB-F-{i}", "1.6" if i % 2 == 0 else "2.0.1") for i in range(args.connections)]
    database, cleanup = prepare_database("sparklin_bench_fuzz")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections
    from django_scopes import scopes_disabled

    from chargers.models import ChargingSession, QuarantinedEvents

    call_command("migrate", verbosity=0)
    _fleet(fuzzers)
    connections.close_all()

    port = free_port()
    env = dict(
        os.environ,
        CELERY_TASK_ALWAYS_EAGER="false",
        CELERY_TASK_DEFAULT_QUEUE="bench-fuzz",
        LOG_LEVEL="WARNING",
        GATEWAY_INSTANCE_ID="fuzz",
        PYTHONUNBUFFERED="1",
    )
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    gateway_log, worker_log = logs / "sparklin-fuzz-gateway.log", logs / "sparklin-fuzz-worker.log"
    worker = start_process(worker_command(loglevel="WARNING", queue="bench-fuzz"), env, worker_log)
    gateway = start_process(
        [sys.executable, "manage.py", "run_gateway", "--host", "127.0.0.1", "--port", str(port)],
        env,
        gateway_log,
    )
    try:
        wait_for_port(port, timeout=60)
        time.sleep(2.0)  # the worker's start-up
        rss_before = rss_mb(gateway.pid)
        started = time.monotonic()
        fuzzed, sessions = asyncio.run(_run(f"ws://127.0.0.1:{port}/ocpp/", fuzzers, args.frames))
        elapsed = time.monotonic() - started
        rss_after = rss_mb(gateway.pid)
        recorded = []
        deadline = time.monotonic() + 120
        with scopes_disabled():
            while time.monotonic() < deadline:
                recorded = list(
                    ChargingSession.objects.filter(
                        charger__identity__in=[i for i, _ in HONEST],
                        state=ChargingSession.State.COMPLETED,
                    ).values_list("charger__identity", "energy_wh")
                )
                if len(recorded) == len(HONEST):
                    break
                time.sleep(0.5)
            quarantined = QuarantinedEvents.objects.count()
        alive = {"gateway": gateway.poll() is None, "worker": worker.poll() is None}
    finally:
        for process in (gateway, worker):
            process.terminate()
        for process in (gateway, worker):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        cleanup()

    sent = args.frames * len(fuzzers)
    print(
        f"machine      : {platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()}"
    )
    print(f"database     : {database}; one gateway process, one worker process (solo), real broker")
    print(
        f"fuzz         : {len(fuzzers)} connections × {args.frames} frames = {sent} frames in {elapsed:.1f} s ({sent / elapsed:.0f} frames/s)"
    )
    print(f"answers      : {fuzzed}")
    print(f"gateway RSS  : {rss_before:.0f} MB before → {rss_after:.0f} MB after")
    print(
        f"honest       : {len(recorded)}/{len(HONEST)} sessions recorded, energy {sorted(str(e) for _, e in recorded)} Wh"
    )
    print(f"quarantined  : {quarantined} entries (poison values kept aside, the rest recorded)")
    print(f"alive        : {alive}")
    print(f"logs         : {gateway_log}, {worker_log}")
    ok = len(recorded) == len(HONEST) and all(alive.values()) and all(r.get("open") for r in fuzzed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
