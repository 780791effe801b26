"""`python manage.py run_gateway [--host H] [--port P] [--certfile F --keyfile K]`: the OCPP
gateway, one asyncio process (like healthchecks' `smtpd` command runs its asyncio listener)."""

import asyncio
import logging
import resource
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ocpp_gateway.server import Gateway, tls_context

logger = logging.getLogger(__name__)


def raise_open_files_limit() -> int:
    """One socket per charger: lift the soft open-files limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            logger.warning("Could not raise the open-files limit above %s", soft)
    return soft


class Command(BaseCommand):
    help = "Run the OCPP 1.6J / 2.0.1 gateway (ws://HOST:PORT/ocpp/<identity>)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.GATEWAY_HOST)
        parser.add_argument("--port", type=int, default=settings.GATEWAY_PORT)
        parser.add_argument("--certfile", help="TLS certificate (security profile 2: wss://)")
        parser.add_argument("--keyfile", help="TLS private key")

    def handle(self, *args, host, port, certfile, keyfile, **options):
        context = None
        if certfile or keyfile:
            if not (certfile and keyfile):
                raise CommandError("--certfile and --keyfile go together")
            context = tls_context(certfile, keyfile)
        limit = raise_open_files_limit()
        asyncio.run(self.run(host, port, context, limit))

    async def run(self, host, port, context, limit):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with Gateway(host=host, port=port, ssl=context) as gateway:
            self.stdout.write(f"OCPP gateway listening on {gateway.url} (open files limit {limit})")
            self.stdout.flush()
            await stop.wait()
            self.stdout.write("Stopping: closing connections and flushing events…")
        self.stdout.write("Gateway stopped.")
