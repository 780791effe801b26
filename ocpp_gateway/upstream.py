"""Forwarding to third-party operators: the gateway's side (issue 12, `forwarding/`).

Sparklin stays the charger's one central system and records everything itself; for each
enabled `forwarding.OperatorConnection` of a charger it holds, the gateway keeps one websocket
*to* the operator's central system (an `Upstream`), presenting the configured identity (Basic
auth when a password is set) and the charger's OCPP version, and relays:

- up: every CALL the charger sends (validated, in order, one in flight per connection as OCPP-J
  requires). Monitoring: the operator's answers are ignored. Billing: the answers to Authorize,
  StartTransaction (1.6: its transactionId, which the charger then uses and Sparklin records the
  session under), StopTransaction and TransactionEvent are the operator's; with no valid answer
  within `FORWARDING_ANSWER_TIMEOUT` the connection's fallback applies (Sparklin's own decision,
  or refuse) and is logged.
- down: the operator's CALLs its role allows (Billing: remote start/stop, unlock, trigger,
  read-only Get*; Monitoring: read-only Get* and TriggerMessage for status and meter values)
  go to the charger through the charger's own call path (`GatewayChargePoint.command`: one
  outstanding call, recorded as `ChargerCommand` rows, from_portal=False); the charger's answer
  goes back under the operator's message id. Anything else is answered with a CALLERROR
  (SecurityError; NotImplemented for an unknown action) and logged. Configuration changes,
  charging profiles, resets and firmware are never relayed.

Durability: what an operator must receive is written to the database (`relaybuffer.Buffer`,
rows shared by every gateway; committed off the loop, before the charger is answered) when it is
queued, and deleted once the operator answered it (or let it time out on an open connection), so
an operator that is down, a gateway restart or kill -9, or the charger moving to another gateway
loses nothing: the backlog is replayed in order, by the gateway holding the relay's lease, when
the operator is reachable again (reconnection with exponential backoff and jitter). It is bounded
per (charger, operator): when full, the oldest MeterValues go first, then the oldest other
messages; transaction messages are never dropped. A frame re-sent after a connection dropped
before its answer keeps its message id, so an operator can recognise it (as with a charger's own
retries).

The gateway learns the connections like the charger directory: all enabled ones loaded at start,
what changed (`updated_at`) every `FORWARDING_REFRESH_SECONDS`, so "disconnect" in the portal
stops the relay within seconds and drops its buffer. An upstream lives with the charger's
connection: opened when it connects here, closed when it leaves (several gateways: it moves with
the charger, newest connection wins; the new gateway's upstream waits for the old one's lease). State (connected, last message, buffered count, last error)
and every relayed frame travel to the worker as `operator_state` / `operator_frame` events.

Hook points in the charger connection: `GatewayChargePoint._answer_call` hands a validated CALL to
`ChargerRelay.answer` when the charger has operators; the server attaches and detaches relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from forwarding.models import OperatorConnection
from forwarding.probe import basic_auth, refused_address, upstream_url
from forwarding.secrets import UnreadableSecret, decrypt

from . import relaybuffer, validation
from .base import MAX_LOGGED_FRAME, MAX_UNIQUE_ID, utc_now
from .decisions import db_call
from .ocpplib import OCPPError
from .relaybuffer import Buffer, Item
from .starts import LRU_SIZE, start_key

if TYPE_CHECKING:
    from .base import GatewayChargePoint
    from .server import Gateway

logger = logging.getLogger(__name__)

_COMPACT = (",", ":")
BILLING = "billing"
MONITORING = "monitoring"
REFUSE = "refuse"
RELOAD_SECONDS = 300.0
STATE_EVERY = 5.0  # seconds between state reports while something changes
BACKOFF_FIRST = 0.5
# At most this long a charger's answer waits for its frames to be written to the buffer.
DURABLE_WAIT = 5.0

# Answers that come from the Billing operator.
DECIDED_BY_BILLING = frozenset(
    {"Authorize", "StartTransaction", "StopTransaction", "TransactionEvent"}
)
# Asked live only (a late Authorize means nothing): never buffered.
LIVE_ONLY = frozenset({"Authorize"})

READ_ONLY = {
    "1.6": frozenset({"GetConfiguration", "GetLocalListVersion", "GetCompositeSchedule"}),
    "2.0.1": frozenset(
        {
            "GetVariables",
            "GetBaseReport",
            "GetReport",
            "GetLocalListVersion",
            "GetCompositeSchedule",
            "GetTransactionStatus",
        }
    ),
}
BILLING_CONTROL = {
    "1.6": frozenset(
        {"RemoteStartTransaction", "RemoteStopTransaction", "UnlockConnector", "TriggerMessage"}
    ),
    "2.0.1": frozenset(
        {"RequestStartTransaction", "RequestStopTransaction", "UnlockConnector", "TriggerMessage"}
    ),
}
MONITORING_TRIGGERS = frozenset({"StatusNotification", "MeterValues"})


def allowed(role: str, version: str, action: str, payload: dict[str, Any]) -> bool:
    """Whether an operator in `role` may have `action` sent to the charger."""
    if action in READ_ONLY.get(version, ()):
        return True
    if role == BILLING:
        return action in BILLING_CONTROL.get(version, ())
    if action == "TriggerMessage":
        return payload.get("requestedMessage") in MONITORING_TRIGGERS
    return False


class OperatorUnusable(Exception):
    """The operator accepted the connection but cannot be relayed to (its OCPP version)."""


def reconnect_delay(failures: int, rng: random.Random) -> float:
    """How long an upstream waits before its next attempt to reach the operator, after
    `failures` attempts in a row that got no answer: exponential from BACKOFF_FIRST, capped at
    FORWARDING_RECONNECT_MAX_SECONDS, times a random factor in [0.5, 1] (jitter: the upstreams
    of many chargers whose operator came back do not all reconnect in the same instant)."""
    cap = float(settings.FORWARDING_RECONNECT_MAX_SECONDS)
    nominal = min(cap, BACKOFF_FIRST * (1 << min(max(failures - 1, 0), 16)))
    return nominal * rng.uniform(0.5, 1.0)


class OperatorRow(TypedDict):
    """An enabled operator connection as the gateway uses it (password decrypted)."""

    id: int
    community: int
    charger: str  # the charger's identity (its connection here)
    name: str
    url: str
    identity: str  # presented to the operator
    password: str
    role: str
    fallback: str
    enabled: bool
    updated_at: datetime


def load_rows(since: datetime | None) -> tuple[list[OperatorRow], list[str]]:
    """Operator connections changed since `since` (all enabled ones when None), in one query:
    (rows, errors). A password that cannot be decrypted (the key changed) is sent empty and
    reported."""
    qs = OperatorConnection.objects.with_scopes_disabled()
    qs = qs.filter(updated_at__gte=since) if since is not None else qs.filter(enabled=True)
    rows: list[OperatorRow] = []
    errors: list[str] = []
    for r in qs.values(
        "id",
        "community_id",
        "charger__identity",
        "name",
        "url",
        "identity",
        "password_encrypted",
        "role",
        "fallback",
        "enabled",
        "updated_at",
    ):
        try:
            password = decrypt(r["password_encrypted"])
        except UnreadableSecret:
            password = ""
            errors.append(
                f"operator {r['id']}: stored password unreadable (FORWARDING_KEY changed)"
            )
        rows.append(
            {
                "id": r["id"],
                "community": r["community_id"],
                "charger": r["charger__identity"],
                "name": r["name"],
                "url": r["url"],
                "identity": r["identity"],
                "password": password,
                "role": r["role"],
                "fallback": r["fallback"],
                "enabled": r["enabled"],
                "updated_at": r["updated_at"],
            }
        )
    return rows, errors


# --- one relay -------------------------------------------------------------------------------


class Upstream:
    """The websocket to one operator for one charger connection, and its queue."""

    def __init__(self, relay: ChargerRelay, row: OperatorRow) -> None:
        self.relay = relay
        self.row = row
        self.id = row["id"]
        self.queue: deque[Item] = deque()
        self.wake = asyncio.Event()
        self.ws: ClientConnection | None = None
        self.in_flight: Item | None = None
        self.last_message_at: datetime | None = None
        self.last_error = ""
        self.failures = 0
        self._state_sent: tuple[Any, ...] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None
        # The relay lease (ocpp_gateway.relaybuffer): who we are, and until when (monotonic
        # clock) it is ours; the backlog is loaded and sent only while it is.
        self.owner = f"{relay.cp.gateway.instance_id}/{uuid.uuid4().hex[:12]}"
        self.lease_until = 0.0
        relay.forwarder.live[self.id] = self

    @property
    def cp(self) -> GatewayChargePoint:
        return self.relay.cp

    @property
    def connected(self) -> bool:
        return self.ws is not None

    @property
    def leased(self) -> bool:
        return time.monotonic() < self.lease_until

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"upstream-{self.cp.id}-{self.id}")

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for t in list(self._tasks):
            t.cancel()
        for item in self.queue:
            if item.waiter is not None and not item.waiter.done():
                item.waiter.set_result(None)
        forwarder = self.relay.forwarder
        if forwarder.live.get(self.id) is self:
            del forwarder.live[self.id]
        if self.lease_until:
            self.lease_until = 0.0
            # Whatever this connection noted is written first: the next holder reads it.
            with contextlib.suppress(Exception):
                await forwarder.buffer.settle()
            try:
                await db_call(relaybuffer.release, [self.owner])
            except DatabaseError as exc:  # it expires by itself
                logger.warning("%s: relay lease not released (%s)", self.cp.id, exc)

    # --- what goes up -------------------------------------------------------------------------
    def offer(self, unique_id: str, action: str, frame: str) -> Item | None:
        """Queue one CALL of the charger for the operator: durable, except the live-only ones
        (asked only while connected with nothing queued, never replayed). None when it is not
        sent at all."""
        if action in LIVE_ONLY and self.row["role"] == BILLING:
            if not self.connected:
                return None  # a late Authorize means nothing; the fallback answers now
            item = Item(unique_id, action, frame)
        else:
            item = Item(unique_id, action, frame)
            self.relay.forwarder.buffer.add(self.id, self.row["community"], item)
        self.queue.append(item)
        self.wake.set()
        self.report()
        return item

    async def decision(self, item: Item, timeout: float) -> dict[str, Any] | None:
        """The operator's answer payload to `item` (validated), or None when there is none in
        time (not connected, no answer, a CALLERROR, an answer breaking the schema)."""
        if item.waiter is None:
            if not self.connected:
                return None
            item.waiter = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(asyncio.shield(item.waiter), timeout)
        except TimeoutError:
            if not item.durable:
                item.abandoned = True
            return None

    # --- the connection -----------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                if not self.leased and not await self._claim():
                    # Another gateway still relays this operator connection (the charger just
                    # moved): it releases the lease when its stale connection closes, or the
                    # lease expires if that gateway died.
                    poll = min(1.0, settings.FORWARDING_LEASE_SECONDS / 3)
                    await asyncio.sleep(poll * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                    continue
                await self._connect_and_serve()
                # The operator hung up (or the lease was lost): the backoff goes on from where
                # it was unless the operator answered something (`_exchange` resets it), so an
                # operator that accepts connections and drops them at once is not hammered.
                self.failures += 1
            except asyncio.CancelledError:
                raise
            except DatabaseError as e:
                self._failed(f"database unreachable: {e}"[:300])
            except InvalidStatus as e:
                self._failed(f"refused the connection: HTTP {e.response.status_code}")
            except OperatorUnusable as e:
                self._failed(str(e))
            except (OSError, TimeoutError, ConnectionClosed) as e:
                self._failed(f"{type(e).__name__}: {e}"[:300])
            except Exception as e:
                logger.exception("%s: upstream %s failed", self.cp.id, self.id)
                self._failed(f"{type(e).__name__}: {e}"[:300])
            self.ws = None
            self.report(force=True)
            forwarder = self.relay.forwarder
            await forwarder.sleep(reconnect_delay(self.failures, forwarder.random))

    async def _claim(self) -> bool:
        """Take the relay of this operator connection, then load its backlog (written by any
        gateway) in order. False while another gateway holds it."""
        seconds = settings.FORWARDING_LEASE_SECONDS
        asked = time.monotonic()
        holder = await db_call(
            relaybuffer.claim, self.id, self.row["community"], self.owner, seconds
        )
        if holder is not None:
            error = f"waiting for gateway {holder.rsplit('/', 1)[0]} to hand the relay over"
            if error != self.last_error:
                self.last_error = error
                self.report(force=True)
            return False
        self.lease_until = asked + seconds
        backlog = await self.relay.forwarder.buffer.load(self.id)
        loaded = {id(item) for item in backlog}
        # Noted while loading (not written yet) and live-only calls go after the backlog.
        later = [i for i in self.queue if id(i) not in loaded and not i.gone and i.rowid is None]
        self.queue = deque([*backlog, *later])
        self.report(force=True)
        return True

    def lease_lost(self) -> None:
        """The renewal found another gateway holding the lease: stop sending at once."""
        self.lease_until = 0.0
        self.last_error = "the relay was taken over by another gateway"
        self.wake.set()

    def _failed(self, error: str) -> None:
        self.failures += 1
        if error != self.last_error:
            logger.warning("%s: operator %s: %s", self.cp.id, self.row["name"], error)
        self.last_error = error

    async def _connect_and_serve(self) -> None:
        version = self.cp.version
        parts = urlsplit(self.row["url"])
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        refusal = refused_address(host, sorted({str(info[4][0]) for info in infos}))
        if refusal is not None:
            raise OSError(refusal)
        async with connect(
            upstream_url(self.row["url"], self.row["identity"]),
            subprotocols=[Subprotocol(f"ocpp{version}")],
            additional_headers=basic_auth(self.row["identity"], self.row["password"]),
            open_timeout=10,
            compression=None,
            max_size=2**20,
        ) as ws:
            if ws.subprotocol != f"ocpp{version}":
                raise OperatorUnusable(f"the operator does not speak OCPP {version}")
            self.ws = ws
            self.last_error = ""
            self.report(force=True)
            reader = asyncio.create_task(self._read(ws), name=f"upstream-read-{self.id}")
            try:
                await self._send_boot(ws, reader)
                await self._send_queue(ws, reader)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await reader
                self.ws = None

    async def _send_boot(self, ws: ClientConnection, reader: asyncio.Task[None]) -> None:
        """A new connection to the operator starts with the charger's BootNotification, as the
        charger's own connection did (unless one is queued)."""
        boot = self.relay.boot
        if boot is None or (self.queue and self.queue[0].action == "BootNotification"):
            return
        payload = json.loads(boot)
        item = Item(str(uuid.uuid4()), "BootNotification", "")
        item.frame = json.dumps(
            [2, item.unique_id, "BootNotification", payload], separators=_COMPACT
        )
        await self._exchange(ws, item, reader)

    async def _send_queue(self, ws: ClientConnection, reader: asyncio.Task[None]) -> None:
        while True:
            if reader.done():
                return  # the operator hung up
            if not self.leased:
                return  # lost or expired: claimed again before anything more is sent
            if not self.queue:
                self.wake.clear()
                waiter = asyncio.create_task(self.wake.wait())
                await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                continue
            item = self.queue[0]
            if item.abandoned or item.gone:
                self.queue.popleft()
                continue
            if not await self._exchange(ws, item, reader):
                return
            self.queue.popleft()
            if item.durable:
                self.relay.forwarder.buffer.remove(self.id, item)
                self.relay.forwarder.buffer.schedule()
            self.report()

    async def _exchange(self, ws: ClientConnection, item: Item, reader: asyncio.Task[None]) -> bool:
        """Send one CALL and wait for its answer (one in flight). False when the connection
        dropped before the answer (the item is sent again on the next connection)."""
        answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        item.answer = answer
        self.in_flight = item
        try:
            self._frame("up", 2, item.unique_id, item.action, item.frame)
            await ws.send(item.frame)
            pending: set[asyncio.Future[Any]] = {answer, reader}
            await asyncio.wait(
                pending,
                timeout=settings.GATEWAY_RESPONSE_TIMEOUT,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if answer.done():
                self.failures = 0  # the operator works: the next reconnection starts afresh
                self._resolve(item, answer.result())
                return True
            if reader.done():
                return False  # hung up before answering: sent again on the next connection
            self._frame("down", 0, item.unique_id, item.action, "", "no answer in time")
            self._resolve(item, None)
            return True
        except ConnectionClosed:
            return False
        finally:
            self.in_flight = None
            if not answer.done():
                answer.cancel()

    def _resolve(self, item: Item, frame: list[Any] | None) -> None:
        waiter = item.waiter
        if waiter is None or waiter.done():
            return
        if frame is None or frame[0] != 3:
            waiter.set_result(None)
            return
        try:
            validation.validate(self.cp.version, item.action, frame[2], response=True)
        except OCPPError as e:
            self._note(f"{item.action}: the operator's answer breaks the schema ({e.code})")
            waiter.set_result(None)
            return
        waiter.set_result(frame[2])

    async def _read(self, ws: ClientConnection) -> None:
        async for message in ws:
            self.last_message_at = utc_now()
            text = message if isinstance(message, str) else message.decode("utf-8", "replace")
            try:
                frame = json.loads(text)
            except ValueError:
                frame = None
            if not isinstance(frame, list) or len(frame) < 3 or not isinstance(frame[1], str):
                self._frame("down", 0, "", "", text, "not an OCPP-J frame: ignored")
                continue
            message_type, unique_id = frame[0], frame[1]
            if message_type == 2 and len(frame) == 4 and isinstance(frame[2], str):
                self._frame("down", 2, unique_id, frame[2], text)
                if not isinstance(frame[3], dict) or len(unique_id) > MAX_UNIQUE_ID:
                    await self._answer_error(ws, unique_id, frame[2], "FormationViolation", "")
                    continue
                task = asyncio.create_task(self._relay_call(ws, unique_id, frame[2], frame[3]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                continue
            item = self.in_flight
            if message_type in (3, 4) and item is not None and unique_id == item.unique_id:
                self._frame("down", message_type, unique_id, item.action, text)
                if item.answer is not None and not item.answer.done():
                    item.answer.set_result(frame)
                continue
            self._frame(
                "down",
                message_type if message_type in (3, 4) else 0,
                unique_id,
                "",
                text,
                "answer to no pending call: ignored",
            )
            self.report()

    # --- what comes down ----------------------------------------------------------------------
    async def _relay_call(
        self, ws: ClientConnection, unique_id: str, action: str, payload: dict[str, Any]
    ) -> None:
        cp = self.cp
        role = self.row["role"]
        if not allowed(role, cp.version, action, payload):
            code = "SecurityError" if action in _known(cp.version) else "NotImplemented"
            note = f"refused: not allowed to the {role} role"
            await self._answer_error(ws, unique_id, action, code, note)
            return
        try:
            validation.validate(cp.version, action, payload)
        except OCPPError as e:
            await self._answer_error(ws, unique_id, action, e.code, str(e.details or ""))
            return
        try:
            status, result = await cp.command(action, payload)
        except (ConnectionClosed, asyncio.CancelledError):
            return
        if result is not None:
            text = json.dumps([3, unique_id, result], separators=_COMPACT)
            self._frame("up", 3, unique_id, action, text)
            with contextlib.suppress(ConnectionClosed):
                await ws.send(text)
            return
        reason = "the charger did not answer" if status == "timed_out" else "the charger refused"
        await self._answer_error(ws, unique_id, action, "InternalError", reason)

    async def _answer_error(
        self, ws: ClientConnection, unique_id: str, action: str, code: str, note: str
    ) -> None:
        text = json.dumps([4, unique_id, code, note[:200], {}], separators=_COMPACT)
        self._frame("up", 4, unique_id, action, text, note)
        if code == "SecurityError":
            logger.warning("%s: operator %s: %s %s", self.cp.id, self.row["name"], action, note)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(text)

    # --- reporting ----------------------------------------------------------------------------
    def _frame(
        self,
        direction: str,
        message_type: int,
        unique_id: str,
        action: str,
        text: str,
        note: str = "",
    ) -> None:
        if direction == "up" and message_type == 2:
            self.last_message_at = utc_now()
        self.cp.gateway.batcher.emit(
            self.cp.id,
            "operator_frame",
            {
                "operator": self.id,
                "direction": direction,
                "message_type": message_type,
                "unique_id": unique_id[:64],
                "action": action[:60],
                "frame": text[:MAX_LOGGED_FRAME],
                "note": note[:200],
            },
            utc_now(),
        )

    def _note(self, error: str) -> None:
        self.last_error = error[:300]
        logger.warning("%s: operator %s: %s", self.cp.id, self.row["name"], error)
        self.report(force=True)

    def report(self, force: bool = False) -> None:
        """Tell the worker this relay's state: at once when it changed in kind (connected,
        error), at most every STATE_EVERY seconds otherwise (the relay's ticker sends the
        rest)."""
        state = (
            self.connected,
            self.last_error,
            self.relay.forwarder.buffer.count(self.id),
            self.last_message_at,
        )
        if state == self._state_sent:
            return
        now = time.monotonic()
        if not force and self._state_sent is not None and state[:2] == self._state_sent[:2]:
            if now - self.relay.forwarder.reported_at.get(self.id, 0.0) < STATE_EVERY:
                self.relay.forwarder.dirty.add(self)
                return
        self._state_sent = state
        self.relay.forwarder.reported_at[self.id] = now
        self.relay.forwarder.dirty.discard(self)
        self.cp.gateway.batcher.emit(
            self.cp.id,
            "operator_state",
            {
                "operator": self.id,
                "connected": self.connected,
                "last_message_at": self.last_message_at.isoformat()
                if self.last_message_at
                else None,
                "buffered": state[2],
                "last_error": self.last_error,
                "gateway": self.cp.gateway.instance_id,
            },
            utc_now(),
        )


def _known(version: str) -> frozenset[str]:
    from .ocpplib import known_actions

    return frozenset(known_actions(version))


class ChargerRelay:
    """The operators of one charger connection: what `_answer_call` calls."""

    def __init__(self, forwarder: Forwarder, cp: GatewayChargePoint) -> None:
        self.forwarder = forwarder
        self.cp = cp
        self.upstreams: dict[int, Upstream] = {}
        self.boot: str | None = None  # the charger's last BootNotification payload (JSON)
        # The Billing operator's 1.6 transaction id for the StartTransaction being handled
        # (frames of one connection are handled one at a time).
        self.transaction_id: int | None = None

    def add(self, row: OperatorRow) -> None:
        upstream = Upstream(self, row)
        self.upstreams[row["id"]] = upstream
        upstream.start()

    async def remove(self, operator: int) -> None:
        upstream = self.upstreams.pop(operator, None)
        if upstream is not None:
            await self.stop(upstream)

    @staticmethod
    async def stop(upstream: Upstream) -> None:
        await upstream.stop()
        upstream.ws = None
        upstream.report(force=True)

    @property
    def billing(self) -> Upstream | None:
        for upstream in self.upstreams.values():
            if upstream.row["role"] == BILLING:
                return upstream
        return None

    async def answer(
        self,
        unique_id: str,
        action: str,
        payload: dict[str, Any],
        handler: Callable[[GatewayChargePoint, dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """Relay one validated CALL of the charger to its operators and return the answer the
        charger gets: Sparklin's (its handler always runs: Sparklin records everything), or, for
        the decisions of a Billing operator, the operator's."""
        cp = self.cp
        if action == "BootNotification":
            self.boot = json.dumps(payload, separators=_COMPACT)
        frame = json.dumps([2, unique_id, action, payload], separators=_COMPACT)
        billing = self.billing
        awaited: Item | None = None
        durable: list[Item] = []  # this frame's rows, one per operator (not live-only ones)
        retried: dict[str, Any] | None = None
        key = ""
        if billing is not None and action == "StartTransaction":
            # A charger that lost the answer sends the same start again (new message id): it
            # gets the operator's first answer, and the operator one start, as Sparklin's own
            # ids do (ocpp_gateway.starts).
            fields = (payload["connectorId"], payload["idTag"], payload["meterStart"])
            key = start_key(cp.id, (*fields, payload["timestamp"]))
            retried = self.forwarder.starts.get(key)
        for upstream in self.upstreams.values():
            if retried is not None and upstream is billing:
                continue
            try:
                item = upstream.offer(unique_id, action, frame)
            except Exception:  # the buffer (disk): forwarding never breaks Sparklin's answer
                logger.exception("%s: %s not forwarded to operator %s", cp.id, action, upstream.id)
                upstream._note(f"{action} not forwarded: the gateway's buffer failed")
                item = None
            if item is not None and item.durable:
                durable.append(item)
            if upstream is billing and action in DECIDED_BY_BILLING and item is not None:
                awaited = item
                if upstream.connected:
                    # Before anything is awaited: the answer may come while the frame is written.
                    item.waiter = asyncio.get_running_loop().create_future()
        buffer = self.forwarder.buffer
        if durable and buffer.error:
            buffer.schedule()  # the database is failing: retried, the charger is not held up
        elif durable:
            # Written before the charger may forget the frame (see relaybuffer).
            try:
                await asyncio.wait_for(buffer.sync(durable), DURABLE_WAIT)
            except Exception:
                logger.exception("%s: the forwarding buffer could not be written", cp.id)
                for upstream in self.upstreams.values():
                    upstream._note(f"{action}: the gateway's buffer failed")
        if billing is None or action not in DECIDED_BY_BILLING:
            return await handler(cp, payload)
        decided: dict[str, Any] | None = retried
        if awaited is not None:
            decided = await billing.decision(awaited, settings.FORWARDING_ANSWER_TIMEOUT)
            if decided is not None and key:
                self.forwarder.remember_start(key, decided)
        if decided is None:
            return await self._fallback(billing, action, payload, handler)
        if action == "StartTransaction":
            self.transaction_id = int(decided["transactionId"])
            try:
                await handler(cp, payload)  # records the session under the operator's id
            finally:
                self.transaction_id = None
        else:
            await handler(cp, payload)
        return decided

    async def _fallback(
        self,
        billing: Upstream,
        action: str,
        payload: dict[str, Any],
        handler: Callable[[GatewayChargePoint, dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        answer = await handler(self.cp, payload)
        refuse = billing.row["fallback"] == REFUSE and (
            action in ("Authorize", "StartTransaction")
            or (action == "TransactionEvent" and payload.get("eventType") == "Started")
        )
        info = "idTagInfo" if self.cp.version == "1.6" else "idTokenInfo"
        if refuse and info in answer:
            answer = {**answer, info: {**answer[info], "status": "Invalid"}}
        what = "refused" if refuse else "Sparklin's decision"
        billing._frame("down", 0, "", action, "", f"no answer in time: fallback ({what})")
        billing._note(f"No answer to {action} in time: fallback applied ({what}).")
        return answer


def relayed_transaction_id(cp: GatewayChargePoint) -> int | None:
    """The 1.6 transaction id the Billing operator gave the StartTransaction being handled."""
    relay = cp.upstream
    return relay.transaction_id if relay is not None else None


# --- the gateway's view of every connection ------------------------------------------------


class Forwarder:
    """One per gateway: the operator connections of every charger (refreshed like the charger
    directory), the durable buffer, and the relays of the chargers held here."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.rows: dict[str, dict[int, OperatorRow]] = {}
        self.loaded_at = 0.0
        self.since: datetime | None = None
        self._seen: dict[int, datetime] = {}  # updated_at of each row as last applied
        self._buffer: Buffer | None = None
        self.live: dict[int, Upstream] = {}  # by operator connection, the upstreams held here
        self.renewed_at = 0.0
        self.reported_at: dict[int, float] = {}
        self.dirty: set[Upstream] = set()
        self._closing: set[asyncio.Task[None]] = set()
        # The Billing operators' answers to recent 1.6 starts, by `starts.start_key`.
        self.starts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # How upstreams wait between attempts to reach an operator (`reconnect_delay`): the
        # jitter's source and the pause itself, replaced by tests that check the delays chosen.
        self.random = random.Random()  # noqa: S311 - jitter, not a secret
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def remember_start(self, key: str, answer: dict[str, Any]) -> None:
        self.starts[key] = answer
        self.starts.move_to_end(key)
        while len(self.starts) > LRU_SIZE:
            self.starts.popitem(last=False)

    @property
    def buffer(self) -> Buffer:
        if self._buffer is None:
            self._buffer = Buffer(settings.FORWARDING_BUFFER_MAX, on_dropped=self._dropped)
        return self._buffer

    def _dropped(self, operator: int, item: Item) -> None:
        upstream = self.live.get(operator)
        if upstream is not None:
            upstream._frame("up", 2, item.unique_id, item.action, "", "dropped: buffer full")
            upstream.report()

    async def renew(self) -> None:
        """Renew the relay leases held here (every third of their life); an upstream whose
        lease another gateway took over stops sending."""
        seconds = settings.FORWARDING_LEASE_SECONDS
        now = time.monotonic()
        held = [u for u in self.live.values() if u.lease_until]
        if not held or now - self.renewed_at < seconds / 3:
            return
        kept = await db_call(relaybuffer.renew, [u.owner for u in held], seconds)
        self.renewed_at = now
        for upstream in held:
            if upstream.owner in kept:
                upstream.lease_until = now + seconds
            elif upstream.lease_until:
                upstream.lease_lost()

    async def load(self) -> None:
        """All enabled connections (at start, then every RELOAD_SECONDS)."""
        try:
            if self.since is None:  # (re)started: none of its old leases is in use
                await db_call(relaybuffer.release_instance, self.gateway.instance_id)
            rows, errors = await db_call(load_rows, None)
        except DatabaseError as exc:
            logger.warning("Operators not loaded, database unreachable (%s)", exc)
            return
        for error in errors:
            logger.warning("Forwarding: %s", error)
        self.rows = {}
        for row in rows:
            self.rows.setdefault(row["charger"], {})[row["id"]] = row
            self._seen[row["id"]] = row["updated_at"]
        self.loaded_at = time.monotonic()
        if rows:
            self.since = max(r["updated_at"] for r in rows)
        elif self.since is None:
            from django.utils import timezone

            self.since = timezone.now()
        await self._reconcile()

    async def refresh(self) -> None:
        """What changed since the last look: new, changed or disabled connections."""
        if self.since is None or time.monotonic() - self.loaded_at > RELOAD_SECONDS:
            await self.load()
            return
        rows, errors = await db_call(load_rows, self.since)
        for error in errors:
            logger.warning("Forwarding: %s", error)
        touched = set()
        for row in rows:
            by_id = self.rows.setdefault(row["charger"], {})
            if self._seen.get(row["id"]) == row["updated_at"]:
                continue  # read again because of the >= on the last time seen
            self._seen[row["id"]] = row["updated_at"]
            touched.add(row["charger"])
            if row["enabled"]:
                by_id[row["id"]] = row
            else:
                by_id.pop(row["id"], None)
                self.buffer.forget(row["id"])
                self.buffer.schedule()
            self.since = max(self.since, row["updated_at"])
        if touched:
            await self._reconcile(touched)

    async def _reconcile(self, identities: set[str] | None = None) -> None:
        """Open, restart or close the upstreams of the chargers held here (of `identities`
        only, when given) to match the rows."""
        if identities is None:
            held = list(self.gateway.connections.items())
        else:
            held = [
                (i, self.gateway.connections[i])
                for i in identities
                if i in self.gateway.connections
            ]
        for identity, cp in held:
            wanted = self.rows.get(identity) or {}
            relay = cp.upstream
            if relay is None:
                if wanted:
                    self.attach(cp)
                continue
            # Taken out of the relay at once (nothing more is offered to them), stopped after:
            # a stop writes what was noted and releases the lease, which takes a moment.
            gone = [
                relay.upstreams.pop(operator)
                for operator, upstream in list(relay.upstreams.items())
                if wanted.get(operator) != upstream.row
            ]
            for operator, row in wanted.items():
                if operator not in relay.upstreams:
                    relay.add(row)
            if not relay.upstreams:
                cp.upstream = None
            for upstream in gone:
                await relay.stop(upstream)

    async def run(self) -> None:
        """Refresh the connections; report states that changed since their last report."""
        while True:
            await asyncio.sleep(settings.FORWARDING_REFRESH_SECONDS)
            try:
                await self.refresh()
                await self.renew()
            except DatabaseError as exc:
                logger.warning("Operators: refresh failed (%s)", exc)
            if self._buffer is not None and self._buffer.pending:
                with contextlib.suppress(Exception):  # retried at the next turn
                    await asyncio.shield(self._buffer.schedule())
            for upstream in list(self.dirty):
                upstream.report(force=True)

    def attach(self, cp: GatewayChargePoint) -> None:
        """The charger connected here: open its operators' upstreams."""
        rows = self.rows.get(cp.id)
        if not rows:
            return
        relay = ChargerRelay(self, cp)
        cp.upstream = relay
        for row in rows.values():
            relay.add(row)

    def detach(self, cp: GatewayChargePoint) -> None:
        """The charger's connection ended: close its upstreams (what they did not deliver stays
        in the buffer for its next connection)."""
        relay, cp.upstream = cp.upstream, None
        if relay is None:
            return
        for operator in list(relay.upstreams):
            task = asyncio.create_task(relay.remove(operator), name=f"upstream-close-{operator}")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for cp in list(self.gateway.connections.values()):
            self.detach(cp)
        for task in list(self._closing):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._buffer is not None:
            await self._buffer.aclose()
            self._buffer = None
