"""`python -m bench [--drivers N] [--sessions N] [--keep]`: generate one month of expense notes
(PDF rendering included) for N drivers with M sessions each, and print the wall time and the
peak memory. Not a timed test: numbers for the README and the architecture page.

With DATABASE_URL (PostgreSQL) it creates its own database `sparklin_bench` next to the one
named there, migrates it and drops it afterwards; without, a temporary SQLite file."""

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from bench import prepare_database

YEAR, MONTH = 2025, 10


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _seed(drivers: int, sessions: int):
    from django_scopes import scopes_disabled

    from accounts.models import User
    from billing.models import Price
    from chargers.models import Charger, ChargingSession, Connector
    from communities.models import Community, Membership, Role, Site

    with scopes_disabled():
        community = Community.objects.create(
            name="Bench Company",
            slug="bench",
            address="1 rue du Banc\n75001 Paris",
            expense_email="finance@bench.example",
        )
        Price.objects.create(community=community, valid_from="2020-01-01", price_per_kwh="0.2516")
        Price.objects.create(community=community, valid_from="2025-10-15", price_per_kwh="0.3120")
        site = Site.objects.create(community=community, name="Parking")
        chargers = [
            Charger.objects.create(community=community, site=site, identity=f"BENCH-{i:03d}")
            for i in range(20)
        ]
        connectors = [
            Connector.objects.create(community=community, charger=c, connector_id=1)
            for c in chargers
        ]
        users = User.objects.bulk_create(
            [
                User(
                    phone=f"+3361{n:07d}",
                    first_name=f"Driver{n}",
                    last_name="Bench",
                    email=f"driver{n}@bench.example",
                    password="!",
                )
                for n in range(drivers)
            ],
            batch_size=1000,
        )
        Membership.objects.bulk_create(
            [Membership(community=community, user=u, role=Role.INDIVIDUAL) for u in users],
            batch_size=1000,
        )
        tz = community.tz
        rows = []
        for n, user in enumerate(users):
            for s in range(sessions):
                day = 1 + s % 31
                start = datetime(YEAR, MONTH, day, 7 + (s * 5 + n) % 14, (n * 7) % 60, tzinfo=tz)
                energy = Decimal(2000 + (n * 37 + s * 911) % 30000)
                price = Decimal("0.2516") if day < 15 else Decimal("0.3120")
                connector = connectors[(n + s) % len(connectors)]
                rows.append(
                    ChargingSession(
                        community=community,
                        charger_id=connector.charger_id,
                        connector=connector,
                        transaction_id=f"{n}-{s}",
                        holder=user,
                        state=ChargingSession.State.COMPLETED,
                        started_at=start,
                        stopped_at=start + timedelta(minutes=30 + (n + s) % 300),
                        meter_start_wh=Decimal(0),
                        meter_stop_wh=energy,
                        energy_wh=energy,
                        price_per_kwh=price,
                        cost=(energy / 1000 * price).quantize(Decimal("0.01"), ROUND_HALF_UP),
                    )
                )
        ChargingSession.objects.bulk_create(rows, batch_size=2000)
    return community


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--drivers", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=30, help="sessions per driver")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)

    database, cleanup = prepare_database("sparklin_bench", keep=args.keep)
    media = tempfile.mkdtemp(prefix="sparklin-bench-media-")
    os.environ["MEDIA_ROOT"] = media
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        t0 = time.perf_counter()
        community = _seed(args.drivers, args.sessions)
        seeded = time.perf_counter() - t0
        rss_before = _maxrss_mb()

        from billing import services

        print(
            f"Generating {YEAR}-{MONTH:02d} for {args.drivers} drivers x {args.sessions} "
            f"sessions on {database} (seeded in {seeded:.1f} s)…",
            flush=True,
        )
        t0 = time.perf_counter()
        result = services.generate_month(community=community, year=YEAR, month=MONTH)
        elapsed = time.perf_counter() - t0
        rss_after = _maxrss_mb()
        pdf_bytes = sum(
            os.path.getsize(os.path.join(root, f))
            for root, _dirs, files in os.walk(media)
            for f in files
        )
        t1 = time.perf_counter()
        again = services.generate_month(community=community, year=YEAR, month=MONTH)
        rerun = time.perf_counter() - t1
    finally:
        shutil.rmtree(media, ignore_errors=True)
        cleanup()

    notes = len(result.created)
    print(
        f"machine          : {platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()} · {platform.platform()}"
    )
    print(
        f"notes issued     : {notes} ({args.drivers * args.sessions} sessions), {pdf_bytes / 1e6:.1f} MB of PDF"
    )
    print(
        f"wall time        : {elapsed:.1f} s ({elapsed / max(notes, 1) * 1000:.0f} ms per note, {notes / elapsed:.1f} notes/s)"
    )
    print(f"peak memory (RSS): {rss_after:.0f} MB (before generating: {rss_before:.0f} MB)")
    print(
        f"re-run (nothing changed): {rerun:.1f} s, {len(again.created)} new, {again.unchanged} unchanged"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
