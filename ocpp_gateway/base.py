"""What the 1.6 and 2.0.1 charge points share: OCPP-J framing, dispatch, the calls the gateway
sends, the message log and events.

The gateway does not use the library's `ChargePoint`: it renamed every key camel→snake and called
`inspect.signature` on every message (44 % of the gateway's CPU), and kept per-instance route
maps, queues and locks. Here a validated frame goes straight to the handler of an explicit
action → handler table (`HANDLERS` of each versioned class): handlers take the camelCase payload
dict as the charger sent it and return the answer dict. What the library does well (schemas,
action names, error codes, call dataclasses) comes through `ocpplib`, the one adapter.

Frames are bounded before they are decoded (size by the websocket server, nesting depth here),
so no frame can raise a RecursionError or reach the worker as a structure: the message log
carries each frame once, as its raw text, truncated to `MAX_LOGGED_FRAME` characters.

Calls the gateway sends: one outstanding call per charger (a lock, created on first use), a
pending table keyed by unique id with a timeout. An answer that matches no pending call
(unsolicited, or late after its call timed out) is dropped, logged and counted, never handed to
the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from django.db import DatabaseError
from websockets.exceptions import ConnectionClosed

from chargers.contract import Kind

from . import validation
from .batcher import NotDurable
from .decisions import db_call, load_charger
from .ocpplib import (
    FormationViolationError,
    InternalError,
    NotSupportedError,
    OCPPError,
    RpcFrameworkError,
    known_actions,
)
from .ocpplib import NotImplementedError as OcppNotImplementedError

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from .commands import PendingCommand
    from .server import Gateway
    from .upstream import ChargerRelay

logger = logging.getLogger(__name__)

MAX_UNIQUE_ID = 36  # OCPP-J: "maximum of 36 characters, to allow for GUIDs"
MAX_DEPTH = 32  # nesting of a frame, its outer array included (real payloads stay under 10)
MAX_LOGGED_FRAME = 4000  # characters of a frame kept in the message log
_ANSWERABLE_ID = 128  # longer ids are not echoed back in a CALLERROR

# Process-wide counters of what the gateway refused or dropped (logged at most every
# `_LOG_EVERY` occurrences per connection so a flood cannot flood the logs too).
STATS: Counter[str] = Counter()
_LOG_EVERY = 1000

# Type and unique id at the start of an otherwise unusable frame: `[2,"abc",…`.
_HEAD = re.compile(r'^\s*\[\s*(\d{1,3})\s*,\s*"([^"\\]{1,' + str(_ANSWERABLE_ID) + '})"')
# Strings (skipped) and brackets, to measure nesting without decoding.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_COMPACT = (",", ":")
# For what orjson refuses (see `encode`): one encoder, not one per `json.dumps(…)` call.
_json_encode = json.JSONEncoder(separators=_COMPACT).encode


def decode(raw: str) -> Any:
    """A frame's JSON, decoded by orjson (3x the json module's speed on OCPP frames); what
    orjson refuses but the json module reads (NaN, Infinity, lone surrogates) is decoded as
    before, and what neither reads raises ValueError (or RecursionError). One difference:
    orjson reads an integer beyond 64 bits as a float, so such a value in an integer field is
    refused by the schema (TypeConstraintViolation) instead of reaching the worker."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def encode(frame: list[Any]) -> str:
    """A frame to send, compact JSON (orjson, UTF-8 as is); the json module for what orjson
    refuses (an integer beyond 64 bits, a non-string key)."""
    try:
        return orjson.dumps(frame).decode()
    except TypeError:
        return _json_encode(frame)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_now() -> str:
    """OCPP wants UTC with a Z."""
    now = utc_now()
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def too_deep(raw: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects more than `limit` deep. A frame with fewer
    brackets than the limit cannot be (two C-speed counts: the common case); otherwise its
    brackets outside strings are walked, without recursion."""
    if raw.count("[") + raw.count("{") <= limit:
        return False
    depth = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > limit:
                return True
        elif token == "]" or token == "}":
            depth -= 1
    return False


class BootFlag:
    """Set once a boot was accepted and answered (nothing is sent to a charger before, OCPP).
    The asyncio.Event behind `wait()` exists only while someone waits: most connections never
    need one."""

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: asyncio.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        if self._set:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()


class CallErrorAnswer(OCPPError):
    """The charger answered one of our calls with a CALLERROR."""

    def __init__(
        self, code: str, description: str = "", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description, details)
        self.code = code


class GatewayChargePoint:
    """One charger connection. Built by the server as
    `cls(identity, ws, gateway=…, charger=…, response_timeout=…)` and run by `await cp.serve()`.

    Versioned subclasses provide `version`, `HANDLERS` (action → `async def handler(cp,
    payload) -> answer`), `PORTAL_ACTIONS`, `configure()` and `check_configuration()`."""

    version = ""
    HANDLERS: dict[str, Any] = {}
    PORTAL_ACTIONS: frozenset[str] = frozenset()

    __slots__ = (
        "id",
        "_connection",
        "gateway",
        "charger",
        "community_id",
        "_timeout",
        "booted",
        "resumed",
        "boot_firmware",
        "superseded",
        "connected_at",
        "_received_at",
        "_call_lock",
        "_pending",
        "_config_task",
        "_external_configurator",
        "_boots",
        "_configured_firmware",
        "_dropped",
        "upstream",
    )

    def __init__(
        self,
        identity: str,
        connection: ServerConnection,
        *,
        gateway: Gateway,
        charger: dict[str, Any],
        response_timeout: float = 30,
    ) -> None:
        self.id = identity
        self._connection = connection
        self.gateway = gateway
        self.charger = charger
        self.community_id = charger["community_id"]
        self._timeout = response_timeout
        self.booted = BootFlag()
        # The charger sent something other than a BootNotification before any boot on this
        # connection: it reconnected after a network drop without rebooting (most chargers do),
        # so the boot it made on an earlier connection was accepted and calls may flow.
        self.resumed = False
        self.boot_firmware: str | None = None
        self.superseded = False
        # When the gateway accepted this connection (wall clock): the newest one wins.
        self.connected_at = 0.0
        self._received_at: datetime | None = None
        self._call_lock: asyncio.Lock | None = None
        self._pending: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] | None = None
        self._config_task: asyncio.Task[None] | None = None
        self._external_configurator = False
        self._boots = 0
        self._configured_firmware: str | None = None
        self._dropped = 0
        # Third-party operators this connection's traffic is relayed to (ocpp_gateway.upstream).
        self.upstream: ChargerRelay | None = None

    # --- events -------------------------------------------------------------------------------
    def emit(
        self, kind: Kind, payload: dict[str, Any] | None = None, received_at: datetime | None = None
    ) -> None:
        self.gateway.batcher.emit(self.id, kind, payload, received_at or self._received_at)

    def _log(
        self,
        direction: str,
        message_type: int,
        unique_id: str,
        action: str,
        text: str,
        at: datetime | None = None,
    ) -> None:
        """One message-log row: the frame's raw text, once, bounded."""
        self.gateway.batcher.emit(
            self.id,
            "message",
            {
                "direction": direction,
                "message_type": message_type,
                "unique_id": unique_id[:64],
                "action": action[:60],
                "frame": text if len(text) <= MAX_LOGGED_FRAME else text[:MAX_LOGGED_FRAME],
            },
            at or utc_now(),
        )

    async def sync(self) -> None:
        """Wait until every event emitted so far is durable (raises NotDurable)."""
        await self.gateway.batcher.sync()

    def accepts_calls(self) -> bool:
        """Whether the gateway may send this connection calls (portal commands, local lists):
        once a boot was accepted here, or once the charger, reconnecting without a reboot,
        talks as an accepted charger (OCPP: nothing is sent before an accepted boot)."""
        return self.resumed or self.booted.is_set()

    def accept_boot(self, firmware: str | None) -> None:
        """Called by the Boot handlers: configuration starts once the answer has gone out."""
        self.boot_firmware = firmware or ""
        self._boots += 1

    # --- the connection -----------------------------------------------------------------------
    async def serve(self) -> None:
        """Read frames until the charger hangs up; then stop this connection's configuration
        and fail the call waiting for an answer."""
        try:
            frames = 0
            async for message in self._connection:
                await self.on_frame(message)
                frames += 1
                if frames % 64 == 0:
                    # A flood of frames that need no answer never suspends the reader: let the
                    # other chargers and the event flusher run.
                    await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        finally:
            task, self._config_task = self._config_task, None
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._pending:
                for _, future in self._pending.values():
                    if not future.done():
                        future.set_exception(ConnectionClosed(None, None))
                self._pending = None

    async def on_frame(self, message: str | bytes) -> None:
        """Handle one websocket message; a bug in a handler never takes the connection down."""
        try:
            if isinstance(message, str):
                await self._on_text(message)
            else:
                self._on_binary(message)
        except (ConnectionClosed, asyncio.CancelledError):
            raise
        except Exception:
            logger.exception("%s: failed to handle frame %.200r", self.id, message)

    def _count(self, what: str, text: str) -> None:
        STATS[what] += 1
        self._dropped += 1
        if self._dropped % _LOG_EVERY == 1:
            logger.warning(
                "%s: %s (%d on this connection): %.200s", self.id, what, self._dropped, text
            )

    def _on_binary(self, data: bytes) -> None:
        """OCPP-J frames are JSON text: a binary frame is not an RPC message and has no unique
        id we could read, so it is not answered; it is logged (as a description, never decoded)
        and counted."""
        self._received_at = now = utc_now()
        self._log(
            "in", 0, "", "", f"<binary frame, {len(data)} bytes: {bytes(data[:64]).hex()}>", now
        )
        self._count("binary_frames", f"binary frame of {len(data)} bytes ignored")

    async def _on_text(self, raw: str) -> None:
        self._received_at = now = utc_now()
        frame: Any = None
        problem: str | None
        if too_deep(raw):
            problem = f"nested deeper than {MAX_DEPTH}"
        else:
            try:
                frame = decode(raw)
            except (ValueError, RecursionError):
                frame = None
            problem = frame_problem(frame)
        if problem is not None:
            await self._refuse(raw, frame, problem, now)
            return
        message_type, unique_id = frame[0], frame[1]
        if message_type == 2:
            action = frame[2]
            self._log("in", 2, unique_id, action, raw, now)
            if action != "BootNotification" and not self.resumed:
                self.resumed = True
            await self._answer_call(unique_id, action, frame[3])
        else:
            self._on_answer(message_type, unique_id, frame, raw, now)

    async def _refuse(self, raw: str, frame: object, problem: str, now: datetime) -> None:
        """A frame that is not an OCPP-J message: logged as text, answered with a CALLERROR when
        it is a CALL (or unreadable) whose unique id can be read, else ignored."""
        message_type, unique_id = None, None
        if isinstance(frame, list):
            if frame and type(frame[0]) is int:
                message_type = frame[0]
            if len(frame) > 1 and isinstance(frame[1], str) and frame[1]:
                unique_id = frame[1]
        else:
            head = _HEAD.match(raw)
            if head:
                message_type, unique_id = int(head.group(1)), head.group(2)
        self._log("in", 0, (unique_id or "")[:64], "", raw, now)
        self._count("refused_frames", f"{problem}: {raw[:200]}")
        if unique_id is None or len(unique_id) > _ANSWERABLE_ID or message_type in (3, 4):
            return  # nothing to answer to, or an answer (never answered)
        await self._send_error(unique_id, "", self._frame_error(message_type, problem))

    def _frame_error(self, message_type: int | None, problem: str) -> OCPPError:
        details = {"cause": problem}
        if self.version == "1.6":
            return FormationViolationError(details=details)
        if problem == "type":
            return CallErrorAnswer("MessageTypeNotSupported", "Unknown MessageTypeId", details)
        if problem.startswith("nested"):
            return validation.format_violation(self.version, details=details)
        return RpcFrameworkError(details=details)

    async def _answer_call(self, unique_id: str, action: str, payload: dict[str, Any]) -> None:
        handler = self.HANDLERS.get(action)
        if handler is None:
            # Both OCPP-J specifications: NotImplemented = "Requested Action is not known by
            # receiver"; NotSupported = "recognized but not supported by the receiver".
            if action in known_actions(self.version):
                error: OCPPError = NotSupportedError(details={"cause": f"{action} not supported"})
            else:
                error = OcppNotImplementedError(details={"cause": f"Unknown action {action[:60]}"})
            await self._send_error(unique_id, action, error)
            return
        boots = self._boots
        try:
            validation.validate(self.version, action, payload)
            if self.upstream is None:
                answer = await handler(self, payload)
            else:  # relayed to operators; a Billing operator's decisions are its own
                answer = await self.upstream.answer(unique_id, action, payload, handler)
        except OCPPError as error:
            await self._send_error(unique_id, action, error)
            return
        except NotDurable as e:
            # Not recorded: do not tell the charger it may forget the message. It retries; the
            # worker's idempotency absorbs a later duplicate.
            STATS["not_durable"] += 1
            logger.warning(
                "%s: %s %s not durable, answered InternalError: %s", self.id, action, unique_id, e
            )
            await self._send_error(
                unique_id, action, InternalError(description="Not recorded yet, please retry")
            )
            return
        except (ConnectionClosed, asyncio.CancelledError):
            raise
        except Exception:
            logger.exception("%s: %s handler failed", self.id, action)
            await self._send_error(unique_id, action, InternalError())
            return
        await self._send(3, unique_id, action, encode([3, unique_id, answer]))
        if self._boots != boots:
            self._after_boot()

    def _on_answer(
        self, message_type: int, unique_id: str, frame: list[Any], raw: str, now: datetime
    ) -> None:
        entry = self._pending.pop(unique_id, None) if self._pending else None
        if entry is None:
            # Unsolicited, or late after its call timed out: dropped (never queued, never handed
            # to another call), logged and counted.
            self._log("in", message_type, unique_id, "", raw, now)
            self._count("unsolicited_answers", f"answer to no pending call: {raw[:200]}")
            return
        action, future = entry
        self._log("in", message_type, unique_id, action, raw, now)
        if future.done():
            return
        if message_type == 3:
            try:
                validation.validate(self.version, action, frame[2], response=True)
            except OCPPError as e:
                future.set_exception(e)
                return
            future.set_result(frame[2])
        else:
            details = frame[4] if isinstance(frame[4], dict) else {}
            if len(raw) > 2000:  # the details travel in a command event: keep them small
                details = {"truncated": json.dumps(details)[:1000]}
            future.set_exception(CallErrorAnswer(str(frame[2])[:50], str(frame[3])[:500], details))

    async def close(self, code: int, reason: str) -> None:
        """Close this connection (the gateway replaces a stale socket with a newer one)."""
        await self._connection.close(code, reason)

    # --- sending ------------------------------------------------------------------------------
    async def _send(self, message_type: int, unique_id: str, action: str, text: str) -> None:
        self._log("out", message_type, unique_id, action, text)
        await self._connection.send(text)

    async def _send_error(self, unique_id: str, action: str, error: OCPPError) -> None:
        text = encode([4, unique_id, error.code, error.description or "", error.details or {}])
        await self._send(4, unique_id, action, text)

    async def call(
        self, action: str, payload: dict[str, Any], *, unique_id: str | None = None
    ) -> dict[str, Any]:
        """Send one CALL and return the charger's answer payload (validated against the
        response schema). One outstanding call per charger; raises TimeoutError after the
        response timeout (the call leaves the pending table: a late answer is dropped),
        `CallErrorAnswer` / another OCPPError when the answer is an error or breaks the schema,
        ConnectionClosed when the charger hangs up."""
        if self._call_lock is None:
            self._call_lock = asyncio.Lock()
        async with self._call_lock:
            unique_id = unique_id or str(uuid.uuid4())
            future = asyncio.get_running_loop().create_future()
            self._pending = {unique_id: (action, future)}
            try:
                await self._send(
                    2,
                    unique_id,
                    action,
                    encode([2, unique_id, action, payload]),
                )
                return await asyncio.wait_for(future, self._timeout)
            finally:
                if self._pending is not None:
                    self._pending.pop(unique_id, None)
                    if not self._pending:
                        self._pending = None

    async def command(
        self, action: str, payload: dict[str, Any], *, uid: str | None = None, record: bool = True
    ) -> tuple[str, dict[str, Any] | None]:
        """Send one command; unless `record` is False, record it as a ChargerCommand (pending →
        sent → outcome) through the event pipeline. Returns (status, answer payload or None).
        `uid` is the portal's row for a command asked there (its status only moves forward)."""
        uid = uid or str(uuid.uuid4())
        record_ = {"uid": uid, "action": action, "payload": payload}
        if record:
            self.emit("command", {**record_, "status": "pending", "response": None}, utc_now())
            self.emit("command", {**record_, "status": "sent", "response": None}, utc_now())
        status, response, result = "failed", None, None
        try:
            result = await self.call(action, payload)
            response = result
            status = command_status(result)
        except TimeoutError:
            status = "timed_out"
        except OCPPError as e:
            response = {
                "errorCode": e.code,
                "errorDescription": e.description,
                "errorDetails": e.details,
            }
        finally:
            if record:
                self.emit("command", {**record_, "status": status, "response": response}, utc_now())
        return status, result

    # --- commands asked from the portal --------------------------------------------------------
    async def run_portal_command(self, row: PendingCommand) -> None:
        """Deliver one ChargerCommand the portal queued (already claimed: status sent) and record
        the charger's answer on it; a setting the charger accepted is merged into its stored
        configuration. "Reconfigure" reads the configuration again and re-applies the vendor
        profile."""
        uid, action, payload = str(row["uid"]), row["action"], row["payload"] or {}
        record = {"uid": uid, "action": action, "payload": payload}
        if action == "Reconfigure":
            status = "failed"
            try:
                await self.reload_charger()
                await self.configure()
                status = "accepted"
            finally:
                self.emit("command", {**record, "status": status, "response": None}, utc_now())
            return
        error = None
        if action not in self.PORTAL_ACTIONS:
            error = "unsupported action"
        else:
            try:
                validation.validate(self.version, action, payload)
            except OCPPError as e:
                error = f"{e.code}: {e.details.get('cause', e.description)}"
        if error is not None:
            self.emit(
                "command",
                {**record, "status": "failed", "response": {"error": error}},
                utc_now(),
            )
            return
        status, _ = await self.command(action, payload, uid=uid)
        if status == "accepted":
            applied = self.applied_configuration(action, payload)
            if applied:
                self.emit("configuration", {"values": applied}, utc_now())

    def applied_configuration(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The configuration values an accepted command set (versioned classes override)."""
        return {}

    async def reload_charger(self) -> None:
        """Read this charger's row again before a configuration asked from the portal: the
        directory's copy may be seconds old (a meter that was just made to read this charger's
        connector 0 must be configured now). Updated in place: it is the directory's dict."""
        try:
            row = await db_call(load_charger, self.id)
        except DatabaseError as exc:
            logger.warning("%s: charger not reloaded before its configuration (%s)", self.id, exc)
            return
        if row is not None and row["id"] == self.charger["id"]:
            self.charger.update(row)

    # --- configuration at every boot ----------------------------------------------------------
    def _after_boot(self) -> None:
        """An accepted boot was answered: commands may flow; configure (full at first
        connection or after a firmware change, else a check of the settings Sparklin needs)."""
        first = not self.booted.is_set()
        self.booted.set()
        if first and self._external_configurator:
            return  # the server's configure_when_booted() task handles this first boot
        task = self._config_task
        if task is not None and not task.done():
            task.cancel()  # the charger rebooted during its configuration: start over
        self._config_task = asyncio.create_task(
            self._configure_after_boot(), name=f"configure-{self.id}"
        )

    async def configure_when_booted(self) -> None:
        """For a server that runs the configuration as its own task: waits for the first accepted
        boot, then configures (later boots are handled by the connection itself)."""
        self._external_configurator = True
        await self.booted.wait()
        await self._configure_after_boot()

    def needs_configuration(self) -> bool:
        """A full configuration (read everything, apply the profile) when never done, or when
        the firmware changed since (an update may reset the settings)."""
        if self._configured_firmware is not None:
            return bool(self.boot_firmware) and self.boot_firmware != self._configured_firmware
        if self.charger.get("configured_at") is None:
            return True
        known = self.charger.get("firmware_version") or ""
        return bool(self.boot_firmware) and self.boot_firmware != known

    async def _configure_after_boot(self) -> None:
        try:
            if self.needs_configuration():
                await self.configure()
            else:
                await self.check_configuration()
            self._configured_firmware = self.boot_firmware or ""
        except (asyncio.CancelledError, ConnectionClosed):
            raise
        except Exception:
            logger.exception("%s: configuration failed", self.id)
        finally:
            if self._config_task is asyncio.current_task():
                self._config_task = None  # an idle connection keeps no finished task

    async def configure(self) -> None:  # pragma: no cover - versioned classes implement it
        raise NotImplementedError

    async def check_configuration(self) -> None:  # pragma: no cover - versioned classes
        raise NotImplementedError


_request_ids = itertools.count(1)


# Answers that mean "done" or "will be done": a stored value that needs a reboot, an unlocked
# connector (UnlockConnector), an availability or reset applied once the session ends.
ACCEPTED_STATUSES = frozenset({"Accepted", "RebootRequired", "Unlocked", "Scheduled"})


def command_status(response: object) -> str:
    """accepted/rejected from a command's answer: its `status` when it has one (RebootRequired
    counts as accepted: the value is stored), or all per-item statuses (SetVariables)."""
    if not isinstance(response, dict):
        return "accepted"
    status = response.get("status")
    if status is None:
        results = response.get("setVariableResult")
        if results:
            ok = all(r.get("attributeStatus") in ("Accepted", "RebootRequired") for r in results)
            return "accepted" if ok else "rejected"
        return "accepted"
    return "accepted" if status in ACCEPTED_STATUSES else "rejected"


def frame_problem(frame: object) -> str | None:
    """Why a decoded frame is not an OCPP-J message, or None when it is one."""
    if not isinstance(frame, list):
        return "not a JSON array"
    if len(frame) < 3 or type(frame[0]) is not int or not isinstance(frame[1], str) or not frame[1]:
        return "missing MessageTypeId or MessageId"
    if len(frame[1]) > MAX_UNIQUE_ID:
        return f"MessageId longer than {MAX_UNIQUE_ID} characters"
    if frame[0] == 2:
        if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict):
            return "a CALL is [2, id, action, {payload}]"
        return None
    if frame[0] == 3:
        if len(frame) != 3 or not isinstance(frame[2], dict):
            return "a CALLRESULT is [3, id, {payload}]"
        return None
    if frame[0] == 4:
        if len(frame) < 4 or not isinstance(frame[2], str):
            return "a CALLERROR is [4, id, code, description, {details}]"
        while len(frame) < 5:
            frame.append({} if len(frame) == 4 else "")
        return None
    return "type"
