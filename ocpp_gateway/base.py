"""What the 1.6 and 2.0.1 charge point classes share: frame routing with our own validation and
CALLERRORs, the message log, events, and the commands the gateway sends.

Handlers (in `v16.py` / `v201.py`) only translate a payload into an event and a decision; the
decision comes from `Decisions` (cached reads), the event goes to the `EventBatcher`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from datetime import UTC, datetime

from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult, MessageType
from websockets.exceptions import ConnectionClosed

from . import validation

logger = logging.getLogger(__name__)

# A unique id at the start of an otherwise broken frame: `[2,"abc",…`.
_UNIQUE_ID = re.compile(r'^\s*\[\s*\d+\s*,\s*"([^"\\]{1,64})"')
_MAX_LOGGED_RAW = 4000


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_now() -> str:
    """OCPP wants UTC with a Z."""
    now = utc_now()
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class GatewayChargePoint:
    """Mixin placed before the library's versioned `ChargePoint`.

    `route_message` replaces the library's: it keeps the connection up on malformed frames
    (answering a CALLERROR when the unique id can be read), validates requests with compiled
    schemas instead of jsonschema, and queues every frame in both directions for the message
    log."""

    version = ""

    def __init__(
        self, identity: str, connection, *, gateway, charger: dict, response_timeout: float = 30
    ):
        super().__init__(identity, connection, response_timeout=response_timeout)
        self.gateway = gateway
        self.charger = charger
        self.community_id = charger["community_id"]
        self.booted = asyncio.Event()
        self.boot_firmware: str | None = None
        self._boot_accepted = False
        self._outstanding: dict[str, str] = {}  # unique id of our CALL → action, for the log
        self._answering: tuple[str, str] = ("", "")  # the CALL being answered, for the log
        self._received_at = utc_now()

    # --- events -------------------------------------------------------------------------------
    def emit(self, kind: str, payload: dict | None = None, received_at: datetime | None = None):
        self.gateway.batcher.emit(self.id, kind, payload, received_at or self._received_at)

    def _log(
        self,
        direction: str,
        message_type: int,
        unique_id: str,
        action: str,
        payload,
        at: datetime | None = None,
    ) -> None:
        self.emit(
            "message",
            {
                "direction": direction,
                "message_type": message_type,
                "unique_id": unique_id,
                "action": action,
                "payload": payload,
            },
            at or utc_now(),
        )

    def accept_boot(self, firmware: str | None) -> None:
        """Called by the Boot handlers: the configuration task may start once the answer has
        gone out (route_message sets `booted` after sending it)."""
        self.boot_firmware = firmware or ""
        self._boot_accepted = True

    # --- inbound ------------------------------------------------------------------------------
    async def serve(self) -> None:
        """Read frames until the charger hangs up."""
        try:
            await self.start()
        except ConnectionClosed:
            pass

    async def route_message(self, raw_msg):
        try:
            await self._route(raw_msg)
        except ConnectionClosed:
            raise
        except Exception:
            # A bug in one handler must not take the charger's connection down with it.
            logger.exception("%s: failed to handle frame %.200r", self.id, raw_msg)

    async def _route(self, raw_msg) -> None:
        self._received_at = now = utc_now()
        try:
            frame = json.loads(raw_msg)
        except (ValueError, TypeError):
            frame = None

        problem = _frame_problem(frame)
        if problem is not None:
            self._log("in", 0, "", "", {"raw": str(raw_msg)[:_MAX_LOGGED_RAW]}, now)
            await self._answer_bad_frame(raw_msg, frame, problem)
            return

        message_type, unique_id = frame[0], frame[1]
        if message_type == MessageType.Call:
            action, payload = frame[2], frame[3]
            self._log("in", 2, unique_id, action, payload, now)
            self._answering = (unique_id, action)
            await self._dispatch(Call(unique_id, action, payload))
        elif message_type == MessageType.CallResult:
            action = self._outstanding.pop(unique_id, "")
            self._log("in", 3, unique_id, action, frame[2], now)
            response = CallResult(unique_id, frame[2], action)
            if action:
                try:
                    validation.validate(self.version, action, frame[2], response=True)
                except OCPPError as e:
                    # Hand the waiting call() an error instead of a payload it cannot parse.
                    response = CallError(unique_id, e.code, e.description, e.details)
            self._response_queue.put_nowait(response)
        else:  # CallError
            action = self._outstanding.pop(unique_id, "")
            error = CallError(unique_id, *frame[2:5])
            self._log(
                "in",
                4,
                unique_id,
                action,
                {
                    "errorCode": error.error_code,
                    "errorDescription": error.error_description,
                    "errorDetails": error.error_details,
                },
                now,
            )
            self._response_queue.put_nowait(error)

    async def _answer_bad_frame(self, raw_msg, frame, problem: str) -> None:
        unique_id = None
        if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str):
            unique_id = frame[1]
        elif isinstance(raw_msg, str):
            match = _UNIQUE_ID.match(raw_msg)
            unique_id = match.group(1) if match else None
        if unique_id is None:
            logger.warning("%s: unreadable frame, no unique id to answer: %.200r", self.id, raw_msg)
            return
        if isinstance(frame, list) and frame and frame[0] in (3, 4):
            return  # never answer an answer
        if problem == "type" and self.version != "1.6":
            error = CallError(
                unique_id, "MessageTypeNotSupported", "Unknown MessageTypeId", {"cause": problem}
            )
        else:
            e = validation.format_violation(self.version, details={"cause": problem})
            error = CallError(unique_id, e.code, e.description, e.details)
        await self._send(error.to_json())

    async def _dispatch(self, msg: Call) -> None:
        if msg.action in self.route_map:
            try:
                validation.validate(self.version, msg.action, msg.payload)
            except OCPPError as error:
                await self._send(msg.create_call_error(error).to_json())
                return
        try:
            await self._handle_call(msg)
        except OCPPError as error:
            # Unknown or unsupported action: the library raises, we answer.
            await self._send(msg.create_call_error(error).to_json())
        if self._boot_accepted:
            self._boot_accepted = False
            self.booted.set()

    # --- outbound -----------------------------------------------------------------------------
    async def _send(self, message: str) -> None:
        try:
            frame = json.loads(message)
        except ValueError:
            frame = None
        if isinstance(frame, list) and len(frame) >= 3:
            message_type, unique_id = frame[0], str(frame[1])
            if message_type == MessageType.Call:
                self._outstanding[unique_id] = frame[2]
                self._log("out", 2, unique_id, frame[2], frame[3])
            elif message_type == MessageType.CallResult:
                self._log("out", 3, unique_id, self._answered_action(unique_id), frame[2])
            else:
                self._log(
                    "out",
                    4,
                    unique_id,
                    self._answered_action(unique_id),
                    {"errorCode": frame[2], "errorDescription": frame[3], "errorDetails": frame[4]},
                )
        await self._connection.send(message)

    def _answered_action(self, unique_id: str) -> str:
        return self._answering[1] if self._answering[0] == unique_id else ""

    async def call(self, payload, suppress=True, unique_id=None, skip_schema_validation=True):
        """The library's call(), with its jsonschema pass off: we build the requests ourselves and
        responses are checked with the compiled schemas in `_route`."""
        return await super().call(
            payload, suppress=suppress, unique_id=unique_id, skip_schema_validation=True
        )

    async def command(self, payload, asked_by=None, uid: str | None = None) -> tuple[str, object]:
        """Send one command and record it as a ChargerCommand (pending → sent → outcome) through
        the event pipeline. Returns (status, response). Waits the library's response timeout;
        never wrapped in a shorter wait (a cancelled call would shift later replies by one).
        `uid` is the portal's row for a command asked there (its status only moves forward)."""
        uid = uid or str(uuid.uuid4())
        action = payload.__class__.__name__
        body = snake_to_camel_case(remove_nones(serialize_as_dict(payload)))
        record = {"uid": uid, "action": action, "payload": body}
        self.emit("command", {**record, "status": "pending", "response": None}, utc_now())
        self.emit("command", {**record, "status": "sent", "response": None}, utc_now())
        status, response = "failed", None
        try:
            result = await self.call(payload, suppress=False)
            response = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
            status = command_status(response)
            return status, result
        except TimeoutError:
            status = "timed_out"
            return status, None
        except OCPPError as e:
            response = {
                "errorCode": e.code,
                "errorDescription": e.description,
                "errorDetails": e.details,
            }
            return status, None
        except asyncio.CancelledError:
            raise
        except ConnectionClosed:
            raise
        except Exception as e:  # an answer the library cannot turn into its dataclass
            logger.warning("%s: %s answer unusable: %s", self.id, action, e)
            response = {"error": str(e)[:500]}
            return status, None
        finally:
            self.emit("command", {**record, "status": status, "response": response}, utc_now())

    # --- commands asked from the portal --------------------------------------------------------
    PORTAL_ACTIONS: frozenset[str] = frozenset()  # the versioned classes list theirs

    async def run_portal_command(self, row: dict) -> None:
        """Deliver one ChargerCommand the portal queued (already claimed: status sent) and record
        the charger's answer on it; a setting the charger accepted is merged into its stored
        configuration. "Reconfigure" reads the configuration again and re-applies the vendor
        profile."""
        uid, action, payload = str(row["uid"]), row["action"], row["payload"] or {}
        record = {"uid": uid, "action": action, "payload": payload}
        if action == "Reconfigure":
            status = "failed"
            try:
                await self.configure()
                status = "accepted"
            finally:
                self.emit("command", {**record, "status": status, "response": None}, utc_now())
            return
        if action not in self.PORTAL_ACTIONS:
            self.emit(
                "command",
                {**record, "status": "failed", "response": {"error": "unsupported action"}},
                utc_now(),
            )
            return
        try:
            request = type(self).build_call(action, payload)
        except TypeError as e:
            self.emit(
                "command", {**record, "status": "failed", "response": {"error": str(e)}}, utc_now()
            )
            return
        status, _ = await self.command(request, uid=uid)
        if status == "accepted":
            applied = self.applied_configuration(action, payload)
            if applied:
                self.emit("configuration", {"values": applied}, utc_now())

    def applied_configuration(self, action: str, payload: dict) -> dict:
        """The configuration values an accepted command set (versioned classes override)."""
        return {}

    # --- configuration at first connection ----------------------------------------------------
    def needs_configuration(self) -> bool:
        """Configure when never done, or when the firmware changed since (an update may reset
        the settings)."""
        if self.charger.get("configured_at") is None:
            return True
        known = self.charger.get("firmware_version") or ""
        return bool(self.boot_firmware) and self.boot_firmware != known

    async def configure_when_booted(self) -> None:
        """The connection's configuration task: waits for an accepted boot, then applies the
        product's settings once. Owned (and cancelled) by the connection handler."""
        await self.booted.wait()
        if not self.needs_configuration():
            return
        try:
            await self.configure()
        except (asyncio.CancelledError, ConnectionClosed):
            raise
        except Exception:
            logger.exception("%s: configuration failed", self.id)

    async def configure(self) -> None:  # pragma: no cover - versioned classes implement it
        raise NotImplementedError


def command_status(response) -> str:
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
    return "accepted" if status in ("Accepted", "RebootRequired") else "rejected"


def _frame_problem(frame) -> str | None:
    """Why a decoded frame is not an OCPP-J message, or None when it is one."""
    if not isinstance(frame, list):
        return "not a JSON array"
    if len(frame) < 3 or not isinstance(frame[1], str) or not frame[1]:
        return "missing MessageTypeId or MessageId"
    if frame[0] == MessageType.Call:
        if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict):
            return "a CALL is [2, id, action, {payload}]"
        return None
    if frame[0] == MessageType.CallResult:
        if len(frame) != 3 or not isinstance(frame[2], dict):
            return "a CALLRESULT is [3, id, {payload}]"
        return None
    if frame[0] == MessageType.CallError:
        if len(frame) < 4 or not isinstance(frame[2], str):
            return "a CALLERROR is [4, id, code, description, {details}]"
        while len(frame) < 5:
            frame.append({} if len(frame) == 4 else "")
        return None
    return "type"
