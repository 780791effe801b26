"""`python -m bench.meters [--meters N] [--batches B] [--batch-size S] [--keep]`: how many meter
readings per second `meters.readings.record_readings` stores in bulk (validation, the meters'
lookup, the insert, the `last_reading_at` update), and what `site_measurement` costs for one
site and `site_measurements` for all of them (a controller cycle).

Seeds N grid meters on N sites in 10 communities, then records B batches of S readings spread
over the meters (three phases, currents, energy registers), as run_meters' flush and the
worker's main-meter consumer do. Not a timed test: numbers for the README and
docs/architecture.md.

With DATABASE_URL (PostgreSQL) it creates its own database `sparklin_bench_meters` next to the
one named there, migrates it and drops it afterwards (`--keep` keeps it); without, a temporary
SQLite file."""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from bench import prepare_database

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _seed(n_meters: int) -> list[int]:
    from communities.models import Community, Site
    from meters.models import Meter

    communities = [
        Community.objects.create(name=f"Bench {i}", slug=f"bench-m-{i}") for i in range(10)
    ]
    sites = Site.objects.bulk_create(
        [Site(community=communities[i % 10], name=f"Site {i}") for i in range(n_meters)]
    )
    meters = Meter.objects.bulk_create(
        [
            Meter(community_id=s.community_id, site=s, name="Grid", kind="mqtt", config={})
            for s in sites
        ]
    )
    return [m.pk for m in meters]


def _batch(meter_ids: list[int], size: int, step: int, rng: random.Random):
    from meters.readings import NewReading

    at = T0 + timedelta(seconds=step)
    batch = []
    for k in range(size):
        meter_id = meter_ids[(step * size + k) % len(meter_ids)]
        phases = [rng.uniform(-5000, 20000) for _ in range(3)]
        batch.append(
            NewReading(
                meter_id=meter_id,
                at=at + timedelta(microseconds=k),
                power_w_l1=phases[0],
                power_w_l2=phases[1],
                power_w_l3=phases[2],
                current_a_l1=abs(phases[0]) / 230,
                current_a_l2=abs(phases[1]) / 230,
                current_a_l3=abs(phases[2]) / 230,
                energy_import_wh=1e6 + step,
                energy_export_wh=1e5,
            )
        )
    return batch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    where, cleanup = prepare_database("sparklin_bench_meters", keep=args.keep)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django_scopes import scopes_disabled

    from meters.models import MeterReading
    from meters.readings import record_readings, site_measurement, site_measurements

    try:
        call_command("migrate", verbosity=0)
        with scopes_disabled():
            meter_ids = _seed(args.meters)
        rng = random.Random(7)
        for step in range(2):  # warm-up
            record_readings(_batch(meter_ids, args.batch_size, step, rng))
        batches = [_batch(meter_ids, args.batch_size, 10 + s, rng) for s in range(args.batches)]
        queries = [0]

        def count(execute, sql, params, many, context):
            queries[0] += 1
            return execute(sql, params, many, context)

        durations = []
        with connection.execute_wrapper(count):
            for batch in batches:
                started = time.perf_counter()
                record_readings(batch)
                durations.append(time.perf_counter() - started)
        total = sum(durations)
        n = args.batches * args.batch_size
        with scopes_disabled():
            stored = MeterReading.objects.count()
            site_ids = list(
                MeterReading.objects.order_by()
                .values_list("meter__site_id", flat=True)
                .distinct()[:200]
            )
        started = time.perf_counter()
        for site_id in site_ids:
            site_measurement(site_id=site_id)
        per_site = (time.perf_counter() - started) / max(len(site_ids), 1)
        with scopes_disabled():
            every_site = list(
                MeterReading.objects.order_by().values_list("meter__site_id", flat=True).distinct()
            )
        started = time.perf_counter()
        site_measurements(site_ids=every_site)
        bulk = time.perf_counter() - started
        print(f"bench.meters on {where}, Python {platform.python_version()}, {os.cpu_count()} CPUs")
        print(f"  {args.meters} meters, {args.batches} batches × {args.batch_size} readings")
        print(
            f"  readings recorded: {n / total:,.0f}/s (median batch {statistics.median(durations) * 1000:.0f} ms)"
        )
        print(f"  round trips per batch: {queries[0] / args.batches:.1f}; rows stored: {stored:,}")
        print(f"  site_measurement: {per_site * 1000:.2f} ms per site ({len(site_ids)} sites)")
        print(
            f"  site_measurements: {len(every_site)} sites in {bulk * 1000:.0f} ms "
            f"({bulk / max(len(every_site), 1) * 1e6:.0f} µs per site, 2 queries)"
        )
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
