"""`python manage.py simulate_chargers --url ws://127.0.0.1:9000/ocpp/ --identity ID:VERSION …`:
a small simulated fleet that keeps the demo alive (connect, boot, statuses, and now and then a
whole charging session), reconnecting with backoff while the gateway is not up."""

import asyncio
import logging
import signal

from django.core.management.base import BaseCommand, CommandError

from simulator.fleet import run_fleet


class Command(BaseCommand):
    help = "Simulate OCPP 1.6J / 2.0.1 chargers against a running gateway (demo and tests)."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="ws://127.0.0.1:9000/ocpp/")
        parser.add_argument(
            "--identity",
            action="append",
            required=True,
            metavar="ID:VERSION",
            help="charger identity and OCPP version (1.6 or 2.0.1); repeat for several",
        )
        parser.add_argument("--card", default="DEMO-CARD-01", help="card UID presented")
        parser.add_argument("--password", help="Basic-auth password (security profile 1)")
        parser.add_argument("--cycles", type=int, help="sessions per charger, then exit")
        parser.add_argument("--once", action="store_true", help="same as --cycles 1")
        parser.add_argument(
            "--idle-min", type=float, default=20.0, help="seconds between sessions (minimum)"
        )
        parser.add_argument("--idle-max", type=float, default=60.0)
        parser.add_argument(
            "--sample-interval",
            type=float,
            default=10.0,
            help="seconds between meter values while charging",
        )
        parser.add_argument("--samples", type=int, default=6, help="meter values per session")

    def handle(self, *args, **options):
        chargers = []
        for item in options["identity"]:
            identity, _, version = item.rpartition(":")
            if not identity or version not in ("1.6", "2.0.1"):
                raise CommandError(f"--identity {item!r}: expected IDENTITY:1.6 or IDENTITY:2.0.1")
            chargers.append((identity, version))
        cycles = 1 if options["once"] else options["cycles"]
        if options["once"]:
            options["idle_min"] = options["idle_max"] = 0.0
        logging.getLogger("ocpp_gateway").setLevel(logging.INFO)
        asyncio.run(self.run(options, chargers, cycles))

    async def run(self, options, chargers, cycles):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.stdout.write(
            f"Simulating {', '.join(f'{i} ({v})' for i, v in chargers)} against {options['url']}"
        )
        await run_fleet(
            options["url"],
            chargers,
            card=options["card"],
            cycles=cycles,
            idle=(options["idle_min"], max(options["idle_min"], options["idle_max"])),
            sample_interval=options["sample_interval"],
            samples=options["samples"],
            password=options["password"],
            stop=stop,
        )
