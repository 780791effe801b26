"""python manage.py run_meters — read every Modbus TCP, MQTT and simulated meter (meters.runner).

Run one of these processes per installation (two would read every meter twice)."""

import asyncio
import signal

from django.core.management.base import BaseCommand

from meters.runner import Runner


class Command(BaseCommand):
    help = "Read the site meters (Modbus TCP, MQTT, demo) and record their readings."

    def add_arguments(self, parser):
        parser.add_argument("--reload", type=float, default=2.0, help="seconds between reloads")

    def handle(self, *args, **options):
        asyncio.run(self._run(options["reload"]))

    async def _run(self, reload_seconds: float) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Runner(reload_seconds=reload_seconds).run(stop)
