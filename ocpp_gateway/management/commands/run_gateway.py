"""`python manage.py run_gateway [--host H] [--port P] [--certfile F --keyfile K]
[--instance-id ID]`: the OCPP gateway, one asyncio process (like healthchecks' `smtpd` command
runs its asyncio listener). Several may run behind a load balancer: each needs a distinct
instance id (default: host name + random suffix, new at every start)."""

import asyncio
import logging
import resource
import signal
import ssl
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

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


def check_somaxconn(backlog: int) -> None:
    """The kernel caps the listen backlog at net.core.somaxconn: say so when it cuts ours."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            somaxconn = int(f.read().strip())
    except (OSError, ValueError):
        return
    if somaxconn < backlog:
        logger.warning(
            "Listen backlog %s is capped at net.core.somaxconn=%s: raise it (sysctl -w "
            "net.core.somaxconn=%s) so a reconnect storm is not dropped by the kernel",
            backlog,
            somaxconn,
            backlog,
        )


class Command(BaseCommand):
    help = "Run the OCPP 1.6J / 2.0.1 gateway (ws://HOST:PORT/ocpp/<identity>)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.GATEWAY_HOST)
        parser.add_argument("--port", type=int, default=settings.GATEWAY_PORT)
        parser.add_argument("--certfile", help="TLS certificate (security profile 2: wss://)")
        parser.add_argument("--keyfile", help="TLS private key")
        parser.add_argument(
            "--instance-id",
            default=settings.GATEWAY_INSTANCE_ID or None,
            help="name of this gateway process, shown on the charger page (GATEWAY_INSTANCE_ID)",
        )

    def handle(
        self,
        *args: Any,
        host: str,
        port: int,
        certfile: str | None,
        keyfile: str | None,
        instance_id: str | None,
        **options: Any,
    ) -> None:
        context = None
        if certfile or keyfile:
            if not (certfile and keyfile):
                raise CommandError("--certfile and --keyfile go together")
            context = tls_context(certfile, keyfile)
        limit = raise_open_files_limit()
        check_somaxconn(settings.GATEWAY_BACKLOG)
        asyncio.run(self.run(host, port, context, limit, instance_id))

    async def run(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        limit: int,
        instance_id: str | None = None,
    ) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with Gateway(host=host, port=port, ssl=context, instance_id=instance_id) as gateway:
            self.stdout.write(
                f"OCPP gateway {gateway.instance_id} listening on {gateway.url}"
                f" (open files limit {limit}, backlog {gateway.backlog})"
            )
            self.stdout.flush()
            await stop.wait()
            self.stdout.write("Stopping: closing connections and flushing events…")
        self.stdout.write("Gateway stopped.")
