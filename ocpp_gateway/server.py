"""The gateway server: one asyncio `websockets` server holding the chargers' connections.

    ws://HOST:PORT/ocpp/<identity>   subprotocols ocpp2.0.1 (preferred) and ocpp1.6

The charger is authenticated at the upgrade (`process_request`): a registered identity (else
404), its Basic-auth user name and password when it has one (else 401), a supported subprotocol
(else 400). Refusals are recorded through the event pipeline. Abuse is throttled before any work
(429 with Retry-After): refusals per source address, wrong passwords per identity and per source
address. Known chargers are answered from the in-memory directory (no database round trip), so
a reconnect storm costs the handshakes only; handshake failures (timeouts, resets, refusals) are
counted by reason and summarised in one log line every `SUMMARY_SECONDS`. An accepted connection
runs inside the charger's community scope, like every other entry point.

Several gateways share a fleet through the registry (`ocpp_gateway.registry`): the newest
connection of a charger wins, in this process and across processes.

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
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from http import HTTPStatus
from ssl import SSLContext
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connections
from django_scopes import scope
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidMessage
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from . import validation
from .base import GatewayChargePoint
from .batcher import EventBatcher
from .commands import PendingCommand, claim_pending
from .decisions import ChargerRow, Decisions, DecisionUnavailable, db_call
from .registry import Registry
from .throttle import TokenBucket
from .upstream import Forwarder
from .v16 import ChargePoint16
from .v201 import ChargePoint201

if TYPE_CHECKING:
    from .access import AccessRules
    from .starts import StartIds

logger = logging.getLogger(__name__)

SUBPROTOCOLS = [Subprotocol("ocpp2.0.1"), Subprotocol("ocpp1.6")]  # server order = preference
PATH_PREFIX = "/ocpp/"
SUMMARY_SECONDS = 10.0

# The library logs every malformed upgrade request with a traceback; they are counted and
# summarised instead (a storm or a scanner would otherwise flood the log).
websockets_logger = logging.getLogger("ocpp_gateway.websockets")


class _CountedInSummary(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "opening handshake failed"


websockets_logger.addFilter(_CountedInSummary())


class HandshakeStats:
    """Handshake failures by reason: `timeout` (open timeout passed), `reset` (the peer hung up
    before the answer), `invalid` (not a websocket upgrade), `http_<status>` (refused: 404
    unknown, 401 password, 400 subprotocol, 429 throttled, 503 database unreachable). One summary
    line per period instead of a line per failure."""

    def __init__(self) -> None:
        self.recent: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self.accepted = 0

    def record(self, reason: str) -> None:
        self.recent[reason] += 1
        self.total[reason] += 1

    def summary(self) -> str | None:
        if not self.recent:
            return None
        line = ", ".join(f"{reason} {count}" for reason, count in sorted(self.recent.items()))
        self.recent.clear()
        return line


class _CountingConnection(ServerConnection):
    """The library's server connection, counting why an opening handshake did not open."""

    stats: HandshakeStats
    # The registered charger, set by `Gateway.process_request` when it accepts the upgrade.
    sparklin_charger: ChargerRow

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().handshake(*args, **kwargs)
        except asyncio.CancelledError:
            # `open_timeout` cancels the handshake (or the server is stopping).
            self.stats.record("timeout")
            raise
        except Exception:
            self.stats.record("reset")
            raise
        if self.protocol.state is State.OPEN:
            self.stats.accepted += 1
        elif isinstance(self.protocol.handshake_exc, InvalidMessage) and isinstance(
            self.protocol.handshake_exc.__cause__, EOFError
        ):
            self.stats.record("reset")  # hung up before sending a whole request
        elif self.protocol.handshake_exc is not None:
            self.stats.record("invalid")
        elif self.response is not None and self.response.status_code != 101:
            self.stats.record(f"http_{self.response.status_code}")
        else:
            self.stats.record("reset")


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
        ssl: SSLContext | None = None,
        instance_id: str | None = None,
        batcher: EventBatcher | None = None,
        decisions: Decisions | None = None,
        response_timeout: float | None = None,
        command_poll_seconds: float | None = None,
        backlog: int | None = None,
        open_timeout: float | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl
        self.instance_id = instance_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.batcher = batcher or EventBatcher()
        self.decisions = decisions or Decisions()
        self.registry = Registry(
            settings.REDIS_URL or None,
            self.instance_id,
            ttl=settings.GATEWAY_REGISTRY_TTL,
            max_connections=settings.GATEWAY_REDIS_MAX_CONNECTIONS,
            on_takeover=self._taken_over,
        )
        self.backlog = backlog or settings.GATEWAY_BACKLOG
        self.open_timeout = open_timeout or settings.GATEWAY_OPEN_TIMEOUT
        self.stats = HandshakeStats()
        # Throttles at the upgrade (see ocpp_gateway.throttle): refusals per source address,
        # wrong passwords per identity and per source address.
        self.refusals_by_address = TokenBucket(capacity=20, rate=1 / 3)
        self.guesses_by_identity = TokenBucket(capacity=10, rate=1 / 6)
        self.guesses_by_address = TokenBucket(capacity=30, rate=1 / 2)
        self.response_timeout = (
            response_timeout if response_timeout is not None else settings.GATEWAY_RESPONSE_TIMEOUT
        )
        self.command_poll_seconds = (
            command_poll_seconds
            if command_poll_seconds is not None
            else settings.GATEWAY_COMMAND_POLL_SECONDS
        )
        self.connections: dict[str, GatewayChargePoint] = {}
        self.forwarder = Forwarder(self)  # relays to third-party operators
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Portal commands being delivered, kept so none floats and stop() can cancel them.
        self._command_tasks: set[asyncio.Task[None]] = set()
        # Stale sockets being closed (replaced by a newer connection of their charger).
        self._closing: set[asyncio.Task[None]] = set()

    # Created on first use by `ocpp_gateway.starts.start_ids` (1.6 transaction ids).
    start_ids: StartIds
    # Created on first use by `ocpp_gateway.access.access_rules` (rules of use).
    access_rules: AccessRules

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl else "ws"
        return f"{scheme}://{self.host}:{self.port}{PATH_PREFIX}"

    # --- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        directory = self.decisions.directory
        try:
            count = await directory.load()
            logger.info("Charger directory loaded: %s chargers", count)
        except DatabaseError as exc:
            # Start anyway: chargers are looked up one by one until the refresher loads it.
            logger.warning("Charger directory not loaded, database unreachable (%s)", exc)
        await self.forwarder.load()
        for cls in (ChargePoint16, ChargePoint201):
            validation.compile_requests(cls.version, cls.HANDLERS)

        def create_connection(*args: Any, **kwargs: Any) -> _CountingConnection:
            connection = _CountingConnection(*args, **kwargs)
            connection.stats = self.stats
            return connection

        server = await serve(
            self.handler,
            self.host,
            self.port,
            process_request=self.process_request,
            subprotocols=SUBPROTOCOLS,
            compression=None,  # 20 KB per idle connection instead of 57 KB (measured)
            ssl=self.ssl,
            max_size=2**20,
            # A storm: thousands of handshakes queue in the kernel (capped by
            # net.core.somaxconn) and take longer than the library's 10 s on a busy machine.
            backlog=self.backlog,
            open_timeout=self.open_timeout,
            # Typed as a class, documented as "a wrapper or a subclass": a factory function is
            # what websockets calls.
            create_connection=create_connection,  # type: ignore[arg-type]
            logger=websockets_logger,
        )
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        # The server's own long-lived tasks, kept and cancelled in stop().
        self._tasks = [
            asyncio.create_task(self.batcher.run(), name="gateway-event-flusher"),
            asyncio.create_task(self.registry.run(self._held), name="gateway-registry"),
            asyncio.create_task(self._poll_commands(), name="gateway-commands"),
            asyncio.create_task(self._refresh_directory(), name="gateway-directory"),
            asyncio.create_task(self._summarise_handshakes(), name="gateway-handshakes"),
            asyncio.create_task(self.forwarder.run(), name="gateway-forwarding"),
        ]
        logger.info("OCPP gateway %s listening on %s", self.instance_id, self.url)

    async def stop(self) -> None:
        """Close every connection (1001 going away), let handlers record the disconnections,
        then flush what is left and release threads and database connections."""
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
            self._server = None
        tasks = [*self._tasks, *self._command_tasks, *self._closing]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._command_tasks.clear()
        self._closing.clear()
        await self.forwarder.close()
        await self.batcher.close()
        try:
            await self.registry.close()
        except Exception as exc:
            logger.warning("Registry: not released at stop (%s)", exc)
        await sync_to_async(connections.close_all)()

    def _held(self) -> dict[str, float]:
        return {identity: cp.connected_at for identity, cp in self.connections.items()}

    async def _refresh_directory(self) -> None:
        """Keep the charger directory current: a delta every few seconds, a full reload now and
        then (deleted chargers, columns written without save())."""
        directory = self.decisions.directory
        failing = False
        while True:
            await asyncio.sleep(settings.GATEWAY_DIRECTORY_REFRESH_SECONDS)
            try:
                age = time.monotonic() - directory.loaded_at
                if not directory.loaded or age >= settings.GATEWAY_DIRECTORY_RELOAD_SECONDS:
                    await directory.load()
                else:
                    await directory.refresh()
            except DatabaseError as exc:
                if not failing:
                    logger.warning(
                        "Charger directory: refresh failed, serving the last one (%s)", exc
                    )
                failing = True
                continue
            if failing:
                logger.warning("Charger directory: database reachable again")
                failing = False

    async def _summarise_handshakes(self) -> None:
        while True:
            await asyncio.sleep(SUMMARY_SECONDS)
            line = self.stats.summary()
            if line:
                logger.warning(
                    "Handshake failures in the last %.0f s: %s (accepted so far %s)",
                    SUMMARY_SECONDS,
                    line,
                    self.stats.accepted,
                )

    def _taken_over(self, identity: str, connected_at: float) -> None:
        """Another gateway holds a newer connection of `identity`: close ours, which must not
        record a disconnection (the charger is connected, elsewhere)."""
        cp = self.connections.get(identity)
        if cp is None or cp.connected_at >= connected_at:
            return
        logger.info("%s: connected to another gateway since; closing the stale socket", identity)
        del self.connections[identity]
        self._close_stale(cp, "Connected to another gateway")

    def _close_stale(self, cp: GatewayChargePoint, reason: str) -> None:
        cp.superseded = True
        task = asyncio.create_task(cp.close(1000, reason), name=f"close-{cp.id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _poll_commands(self) -> None:
        """The command bus (see `ocpp_gateway.commands`): claim the portal's pending commands for
        the chargers held here and deliver each in its own task (calls to one charger are
        serialised by the library's call lock)."""
        while True:
            await asyncio.sleep(self.command_poll_seconds)
            try:
                # Only chargers whose boot was accepted (on this connection, or on an earlier
                # one for a charger that reconnected without rebooting): nothing is sent
                # before (OCPP).
                ready = [i for i, cp in self.connections.items() if cp.accepts_calls()]
                rows = await db_call(claim_pending, ready)
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

    async def _deliver(self, cp: GatewayChargePoint, row: PendingCommand) -> None:
        try:
            with scope(community=cp.community_id):
                await cp.run_portal_command(row)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("%s: command %s failed", cp.id, row["action"], exc_info=True)

    # --- the upgrade --------------------------------------------------------------------------
    def refuse(
        self,
        connection: ServerConnection,
        identity: str,
        reason: str,
        status: HTTPStatus,
        text: str,
        *,
        throttle: bool = True,
    ) -> Response:
        """Refuse the handshake and record it (`UnknownCharger`); each refusal spends one of the
        source address's tokens, so a scan of identities soon gets 429 without any work (wrong
        passwords have their own buckets: `throttle=False`)."""
        remote = _remote(connection)
        if throttle:
            self.refusals_by_address.take(remote)
        self.batcher.emit(
            identity[:100] or "?", "refused", {"reason": reason, "remote_address": remote}
        )
        logger.debug("Refused %r from %s: %s", identity, remote, reason)
        return connection.respond(status, text + "\n")

    @staticmethod
    def too_many(connection: ServerConnection, retry_after: int, text: str) -> Response:
        response = connection.respond(HTTPStatus.TOO_MANY_REQUESTS, text + "\n")
        response.headers["Retry-After"] = str(retry_after)
        return response

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Authenticate at the upgrade; returning a response refuses the handshake."""
        remote = _remote(connection)
        retry_after = self.refusals_by_address.retry_after(remote)
        if retry_after:
            return self.too_many(connection, retry_after, "Too many refused connections")
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
        try:
            charger = await self.decisions.charger(identity)
        except DecisionUnavailable:
            response = connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, "Temporarily unavailable, retry later\n"
            )
            response.headers["Retry-After"] = "10"
            return response
        if charger is None:
            return self.refuse(
                connection, identity, "unknown", HTTPStatus.NOT_FOUND, "Unknown charge point"
            )
        if charger["password_hash"]:
            refusal = await self.check_password(connection, request, charger, remote)
            if refusal is not None:
                return refusal
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
        assert isinstance(connection, _CountingConnection)  # made by start()'s create_connection
        connection.sparklin_charger = charger
        return None

    async def check_password(
        self, connection: ServerConnection, request: Request, charger: ChargerRow, remote: str
    ) -> Response | None:
        """None when the Basic credentials are right, else the refusal. The user name must be
        the identity. A password accepted before passes without hashing and without throttle
        (an attacker guessing cannot lock a charger out that the gateway already knows);
        otherwise wrong guesses are throttled per identity and per source address (429 before
        any hashing) and hashing runs a bounded number at a time."""
        identity = charger["identity"]
        user, password = _basic_credentials(request.headers.get("Authorization"))
        if user == identity and self.decisions.remembered(charger, password):
            return None
        retry_after = max(
            self.guesses_by_identity.retry_after(identity),
            self.guesses_by_address.retry_after(remote),
        )
        if retry_after:
            return self.too_many(connection, retry_after, "Too many wrong passwords")
        if user == identity and await self.decisions.password_ok(charger, password):
            return None
        self.guesses_by_identity.take(identity)
        self.guesses_by_address.take(remote)
        response = self.refuse(
            connection,
            identity,
            "bad_password",
            HTTPStatus.UNAUTHORIZED,
            "Wrong or missing user name or password",
            throttle=False,
        )
        response.headers["WWW-Authenticate"] = 'Basic realm="sparklin", charset="UTF-8"'
        return response

    # --- one connection -----------------------------------------------------------------------
    async def handler(self, ws: ServerConnection) -> None:
        """Runs for the life of one charger connection, inside its community scope. Whatever
        ends it (the charger hanging up during its configuration included), the cleanup runs:
        the disconnection is recorded and the registry released, unless a newer connection of
        the same charger replaced this one (here or on another gateway)."""
        assert isinstance(ws, _CountingConnection)  # made by start()'s create_connection
        charger = ws.sparklin_charger
        identity = charger["identity"]
        cls = ChargePoint201 if ws.subprotocol == "ocpp2.0.1" else ChargePoint16
        remote = _remote(ws)
        with scope(community=charger["community_id"]):
            cp = cls(
                identity, ws, gateway=self, charger=charger, response_timeout=self.response_timeout
            )
            cp.connected_at = time.time()
            previous = self.connections.get(identity)
            self.connections[identity] = cp
            if previous is not None:
                # The charger reconnected before we noticed the old socket died: the new one
                # wins, and the old one must not record a disconnection.
                self._close_stale(previous, "Replaced by a new connection")
            # The connection's start names its interval (chargers.events.uptime): the same
            # instant is the connected event's time and the disconnected event's `connected_at`.
            opened = datetime.fromtimestamp(cp.connected_at, UTC)
            self.batcher.emit(
                identity,
                "connected",
                {
                    "ocpp_version": cls.version,
                    "remote_address": remote,
                    "gateway": self.instance_id,
                },
                opened,
            )
            self.registry.register(identity, cp.connected_at)
            self.forwarder.attach(cp)
            try:
                await cp.serve()  # configures after each accepted boot, in a task it owns
            except ConnectionClosed:
                pass
            finally:
                self.forwarder.detach(cp)
                if self.connections.get(identity) is cp:
                    del self.connections[identity]
                if not cp.superseded:
                    self.batcher.emit(
                        identity,
                        "disconnected",
                        {"code": ws.close_code, "connected_at": opened.isoformat()},
                    )
                    self.registry.unregister(identity, cp.connected_at)


def _remote(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else ""


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """(user name, password) of an HTTP Basic Authorization header, or (None, None)."""
    if not header or not header.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)
