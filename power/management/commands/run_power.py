"""`python manage.py run_power`: the power-management controller, its own long-lived process.

Every POWER_CYCLE_SECONDS it reads the managed sites' meters and sessions, decides the limits and
writes the charging profiles that changed as command rows (see `power.controller`). It holds no
connection to chargers, so one controller serves any number of gateways; run one per deployment
(two would send the same profiles twice, harmlessly). SIGTERM / Ctrl-C stop it after the cycle
in progress; when it is gone, chargers fall back to their failsafe limits as their dynamic
limits expire (POWER_PROFILE_VALIDITY_SECONDS)."""

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from power.controller import Controller

logger = logging.getLogger("power.controller")


class Command(BaseCommand):
    help = "Run the power-management controller (dynamic load balancing, solar, peak shaving)."

    def add_arguments(self, parser):
        parser.add_argument("--cycles", type=int, default=None, help="stop after N cycles")

    def handle(self, *args, cycles=None, **options):
        stop = threading.Event()

        def request_stop(signum, frame):
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        logger.info("power: controller started, a cycle every %ss", settings.POWER_CYCLE_SECONDS)
        Controller().run(stop=stop, cycles=cycles)
        logger.info("power: controller stopped")
