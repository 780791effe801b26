"""`python -m bench.power [--sites N] [--cycles C] [--database NAME] [--keep]`: what the power
controller costs per site per cycle, and how many sites one `run_power` process can manage
every 5 seconds.

Seeds N managed sites (3 × 63 A, dynamic load balancing, a grid meter with a fresh reading),
each with 4 chargers (one single-phase), 3 of them in session with recent Current.Import and
Power.Active.Import samples. A first cycle sends the failsafe and the first limits (answered
Accepted); then each measured cycle follows new meter readings whose building load moves, so a
share of the limits change and profiles are written — the realistic steady state, not an idle
loop. Prints wall and CPU time per site per cycle, database round trips per cycle, profiles
written per cycle, and sites per process at one cycle every 5 s.

With DATABASE_URL (PostgreSQL) it creates its own database (default `sparklin_bench_power`) next
to the one named there, migrates it and drops it afterwards (`--keep` keeps it); without, a
temporary SQLite file."""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal

from bench import prepare_database

CHARGERS_PER_SITE = 4
SESSIONS_PER_SITE = 3


def _seed(n_sites: int):
    from django.utils import timezone
    from django_scopes import scopes_disabled

    from chargers.models import Charger, ChargingSession, Connector
    from communities.models import Community, Site
    from meters.models import Meter
    from power.models import ChargerPower, SitePower

    now = timezone.now()
    with scopes_disabled():
        communities = [
            Community.objects.create(name=f"Power bench {i}", slug=f"power-bench-{i}")
            for i in range(max(1, n_sites // 50))
        ]
        sites = Site.objects.bulk_create(
            [
                Site(community=communities[i % len(communities)], name=f"Site {i}")
                for i in range(n_sites)
            ]
        )
        SitePower.objects.bulk_create(
            [
                SitePower(
                    community_id=s.community_id,
                    site=s,
                    limit_a=Decimal("63"),
                    margin_a=Decimal("2"),
                    load_balancing=True,
                )
                for s in sites
            ]
        )
        meters = Meter.objects.bulk_create(
            [
                Meter(community_id=s.community_id, site=s, name="Grid", kind="mqtt", role="grid")
                for s in sites
            ]
        )
        chargers = Charger.objects.bulk_create(
            [
                Charger(
                    community_id=s.community_id,
                    site=s,
                    identity=f"PB-{s.pk:05d}-{n}",
                    connected=True,
                    connected_since=now - timedelta(hours=1),
                    ocpp_version="2.0.1" if n % 2 else "1.6",
                )
                for s in sites
                for n in range(CHARGERS_PER_SITE)
            ]
        )
        ChargerPower.objects.bulk_create(
            [
                ChargerPower(
                    community_id=c.community_id,
                    charger=c,
                    wiring="l1" if c.identity.endswith("-3") else "l1l2l3",
                )
                for c in chargers
            ]
        )
        connectors = Connector.objects.bulk_create(
            [Connector(community_id=c.community_id, charger=c) for c in chargers]
        )
        sessions = ChargingSession.objects.bulk_create(
            [
                ChargingSession(
                    community_id=k.community_id,
                    charger_id=k.charger_id,
                    connector=k,
                    transaction_id=str(1000 + i),
                    started_at=now - timedelta(minutes=30 + i % 60),
                )
                for i, k in enumerate(connectors)
                if i % CHARGERS_PER_SITE < SESSIONS_PER_SITE
            ]
        )
    return meters, sessions


def _samples(sessions, rng):
    from django.utils import timezone

    from chargers.models import MeterSample

    now = timezone.now()
    rows = []
    for s in sessions:
        amperes = Decimal(str(round(rng.uniform(6, 16), 1)))
        for phase in ("L1", "L2", "L3"):
            rows.append(
                MeterSample(
                    community_id=s.community_id,
                    session=s,
                    timestamp=now,
                    measurand="Current.Import",
                    phase=phase,
                    value=amperes,
                    unit="A",
                )
            )
        rows.append(
            MeterSample(
                community_id=s.community_id,
                session=s,
                timestamp=now,
                measurand="Power.Active.Import",
                value=amperes * 690,
                unit="W",
            )
        )
    MeterSample.objects.bulk_create(rows, ignore_conflicts=True)


def _readings(meters, rng):
    from django.utils import timezone

    from meters.readings import NewReading, record_readings

    now = timezone.now()
    record_readings(
        [
            NewReading(
                meter_id=m.pk,
                at=now,
                power_w_l1=rng.uniform(20, 45) * 230,
                power_w_l2=rng.uniform(20, 45) * 230,
                power_w_l3=rng.uniform(20, 45) * 230,
            )
            for m in meters
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=500)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--database", default="sparklin_bench_power")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    where, cleanup = prepare_database(args.database, keep=args.keep)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")
    import logging

    import django

    django.setup()
    logging.getLogger("power").setLevel(logging.ERROR)
    logging.getLogger("meters").setLevel(logging.ERROR)
    from django.core.management import call_command
    from django.db import connection
    from django_scopes import scopes_disabled

    from chargers.models import ChargerCommand
    from power.controller import Controller

    try:
        call_command("migrate", verbosity=0)
        rng = random.Random(8)
        meters, sessions = _seed(args.sites)
        _readings(meters, rng)
        _samples(sessions, rng)
        controller = Controller()
        first = controller.cycle()  # the failsafe and the first limits
        with scopes_disabled():
            ChargerCommand.objects.filter(status="pending").update(status="accepted")

        queries = [0]

        def count(execute, sql, params, many, context):
            queries[0] += 1
            return execute(sql, params, many, context)

        walls, cpus, trips, written = [], [], [], []
        for _ in range(args.cycles):
            _readings(meters, rng)
            _samples(sessions, rng)
            time.sleep(0.2)
            queries[0] = 0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            with connection.execute_wrapper(count):
                report = controller.cycle()
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0)
            trips.append(queries[0])
            written.append(report.commands)
            assert report.errors == 0 and report.sites == args.sites, report
            with scopes_disabled():
                ChargerCommand.objects.filter(status="pending").update(status="accepted")
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        per_site_wall = wall / args.sites
        print(
            f"Power controller benchmark — {platform.python_implementation()} {platform.python_version()}"
        )
        print(
            f"database: {where}; {args.sites} sites × {CHARGERS_PER_SITE} chargers, "
            f"{SESSIONS_PER_SITE} in session; first cycle {first.seconds:.2f} s, "
            f"{first.commands} profiles"
        )
        print(f"{args.cycles} measured cycles, building load moving every cycle:")
        print(
            f"  cycle:            median {wall:.3f} s wall, {cpu:.3f} s CPU of this process "
            f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )
        print(
            f"  per site:         {per_site_wall * 1000:.2f} ms wall, "
            f"{cpu / args.sites * 1000:.2f} ms CPU per cycle"
        )
        print(f"  round trips:      median {statistics.median(trips):.0f} per cycle")
        print(f"  profiles written: median {statistics.median(written):.0f} per cycle")
        print(
            f"  sites per process every 5 s: {5 / per_site_wall:,.0f} by wall time "
            f"({5 / (cpu / args.sites):,.0f} by this process's CPU)"
        )
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
