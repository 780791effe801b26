"""The gateway server: one asyncio `websockets` server holding the chargers' connections.

    ws://HOST:PORT/ocpp/<identity>   subprotocols ocpp2.0.1 (preferred) and ocpp1.6

The charger is authenticated at the upgrade (`process_request`): a registered identity (else
404), its Basic-auth password when it has one (else 401), a supported subprotocol (else 400).
Refusals are recorded through the event pipeline. An accepted connection runs inside the
charger's community scope, like every other entry point.

Use in code and tests::

    async with Gateway(host="127.0.0.1", port=0) as gateway:
        url = gateway.url          # ws://127.0.0.1:<port>/ocpp/
        ...                        # on exit: connections closed, events flushed
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import socket
import ssl
import uuid
from http import HTTPStatus
from urllib.parse import unquote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django_scopes import scope
from websockets.asyncio.server import serve

from .batcher import EventBatcher
from .commands import claim_pending
from .decisions import Decisions
from .registry import Registry
from .v16 import ChargePoint16
from .v201 import ChargePoint201

logger = logging.getLogger(__name__)

SUBPROTOCOLS = ["ocpp2.0.1", "ocpp1.6"]  # server order = preference
PATH_PREFIX = "/ocpp/"


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """The server side of security profile 2 (Basic auth over TLS): TLS 1.2 at least, as the
    OCPP 1.6 security whitepaper and 2.0.1 require."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


class Gateway:
    """One gateway process: the websocket server, the event batcher (its single flusher task),
    the cached decisions and the Redis registry."""

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 9000,
        *,
        ssl=None,
        instance_id: str | None = None,
        batcher: EventBatcher | None = None,
        decisions: Decisions | None = None,
        response_timeout: float | None = None,
        command_poll_seconds: float | None = None,
    ):
        self.host = host
        self.port = port
        self.ssl = ssl
        self.instance_id = instance_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.batcher = batcher or EventBatcher()
        self.decisions = decisions or Decisions()
        self.registry = Registry(settings.REDIS_URL or None, self.instance_id)
        self.response_timeout = (
            response_timeout if response_timeout is not None else settings.GATEWAY_RESPONSE_TIMEOUT
        )
        self.command_poll_seconds = (
            command_poll_seconds
            if command_poll_seconds is not None
            else settings.GATEWAY_COMMAND_POLL_SECONDS
        )
        self.connections: dict[str, object] = {}
        self._server = None
        self._tasks: list[asyncio.Task] = []
        # Portal commands being delivered, kept so none floats and stop() can cancel them.
        self._command_tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl else "ws"
        return f"{scheme}://{self.host}:{self.port}{PATH_PREFIX}"

    # --- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await serve(
            self.handler,
            self.host,
            self.port,
            process_request=self.process_request,
            subprotocols=SUBPROTOCOLS,
            compression=None,  # 20 KB per idle connection instead of 57 KB (measured)
            ssl=self.ssl,
            max_size=2**20,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        # The server's own long-lived tasks, kept and cancelled in stop(): the single event
        # flusher and the registry refresher.
        self._tasks = [
            asyncio.create_task(self.batcher.run(), name="gateway-event-flusher"),
            asyncio.create_task(self._refresh_registry(), name="gateway-registry"),
            asyncio.create_task(self._poll_commands(), name="gateway-commands"),
        ]
        logger.info("OCPP gateway %s listening on %s", self.instance_id, self.url)

    async def stop(self) -> None:
        """Close every connection (1001 going away), let handlers record the disconnections,
        then flush what is left and release threads and database connections."""
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
            self._server = None
        tasks = [*self._tasks, *self._command_tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._command_tasks.clear()
        await self.batcher.close()
        await self.registry.close()
        await sync_to_async(connections.close_all)()

    async def _refresh_registry(self) -> None:
        while True:
            await asyncio.sleep(self.registry.refresh_every)
            await self.registry.refresh(list(self.connections))

    async def _poll_commands(self) -> None:
        """The command bus (see `ocpp_gateway.commands`): claim the portal's pending commands for
        the chargers held here and deliver each in its own task (calls to one charger are
        serialised by the library's call lock)."""
        while True:
            await asyncio.sleep(self.command_poll_seconds)
            try:
                # Only chargers whose boot was accepted: nothing is sent before (OCPP).
                booted = [i for i, cp in self.connections.items() if cp.booted.is_set()]
                rows = await sync_to_async(claim_pending)(booted)
            except Exception:
                logger.warning("Command bus: poll failed", exc_info=True)
                continue
            for row in rows:
                cp = self.connections.get(row["charger__identity"])
                if cp is None:  # hung up since: the command fails visibly
                    self.batcher.emit(
                        row["charger__identity"],
                        "command",
                        {
                            "uid": str(row["uid"]),
                            "action": row["action"],
                            "payload": row["payload"],
                            "status": "failed",
                            "response": {"error": "The charger disconnected."},
                        },
                    )
                    continue
                task = asyncio.create_task(
                    self._deliver(cp, row), name=f"command-{row['charger__identity']}"
                )
                self._command_tasks.add(task)
                task.add_done_callback(self._command_tasks.discard)

    async def _deliver(self, cp, row: dict) -> None:
        try:
            with scope(community=cp.community_id):
                await cp.run_portal_command(row)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("%s: command %s failed", cp.id, row["action"], exc_info=True)

    # --- the upgrade --------------------------------------------------------------------------
    def refuse(self, connection, identity: str, reason: str, status: HTTPStatus, text: str):
        remote = connection.remote_address[0] if connection.remote_address else ""
        self.batcher.emit(
            identity[:100] or "?", "refused", {"reason": reason, "remote_address": str(remote)}
        )
        logger.info("Refused %r from %s: %s", identity, remote, reason)
        return connection.respond(status, text + "\n")

    async def process_request(self, connection, request):
        """Authenticate at the upgrade; returning a response refuses the handshake."""
        path = request.path.split("?", 1)[0]
        identity = (
            unquote(path[len(PATH_PREFIX) :]).strip("/") if path.startswith(PATH_PREFIX) else ""
        )
        if not identity or "/" in identity:
            return self.refuse(
                connection,
                path,
                "unknown",
                HTTPStatus.NOT_FOUND,
                "Use ws://host:port/ocpp/<charge point identity>",
            )
        charger = await self.decisions.charger(identity)
        if charger is None:
            return self.refuse(
                connection, identity, "unknown", HTTPStatus.NOT_FOUND, "Unknown charge point"
            )
        if charger["password_hash"]:
            password = _basic_password(request.headers.get("Authorization"))
            if not await self.decisions.password_ok(charger, password):
                response = self.refuse(
                    connection,
                    identity,
                    "bad_password",
                    HTTPStatus.UNAUTHORIZED,
                    "Wrong or missing password",
                )
                response.headers["WWW-Authenticate"] = 'Basic realm="sparklin", charset="UTF-8"'
                return response
        offered = [
            p.strip()
            for header in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in header.split(",")
        ]
        if not set(offered) & set(SUBPROTOCOLS):
            return self.refuse(
                connection,
                identity,
                "bad_subprotocol",
                HTTPStatus.BAD_REQUEST,
                "Offer the ocpp1.6 or ocpp2.0.1 subprotocol",
            )
        connection.sparklin_charger = charger
        return None

    # --- one connection -----------------------------------------------------------------------
    async def handler(self, ws) -> None:
        """Runs for the life of one charger connection, inside its community scope."""
        charger = ws.sparklin_charger
        identity = charger["identity"]
        cls = ChargePoint201 if ws.subprotocol == "ocpp2.0.1" else ChargePoint16
        remote = ws.remote_address[0] if ws.remote_address else ""
        with scope(community=charger["community_id"]):
            cp = cls(
                identity, ws, gateway=self, charger=charger, response_timeout=self.response_timeout
            )
            cp.superseded = False
            previous = self.connections.get(identity)
            self.connections[identity] = cp
            if previous is not None:
                # The charger reconnected before we noticed the old socket died: the new one
                # wins, and the old one must not record a disconnection.
                previous.superseded = True
                await previous._connection.close(1000, "Replaced by a new connection")
            self.batcher.emit(
                identity,
                "connected",
                {
                    "ocpp_version": cls.version,
                    "remote_address": str(remote),
                    "gateway": self.instance_id,
                },
            )
            await self.registry.register(identity)
            try:
                await cp.serve()  # configures after each accepted boot, in a task it owns
            finally:
                if self.connections.get(identity) is cp:
                    del self.connections[identity]
                if not cp.superseded:
                    self.batcher.emit(identity, "disconnected", {"code": ws.close_code})
                    await self.registry.unregister(identity)


def _basic_password(header: str | None) -> str | None:
    """The password of an HTTP Basic Authorization header (the user name is the identity; we
    only check the password, which is per charger)."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep else None
