"""The handler table: which function applies each kind of event (`contract.Kind`), and which
check its values must pass before the database sees them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..contract import Kind
from . import connection, outlets, sessions
from .batch import EXTRA_FLUSHES, ChargerState
from .values import Rejected

Handler = Callable[[ChargerState, Any, datetime], None]

HANDLERS: dict[Kind, Handler] = {
    "connected": connection.apply_connected,
    "disconnected": connection.apply_disconnected,
    "boot": connection.apply_boot,
    "heartbeat": connection.apply_heartbeat,
    "firmware_status": connection.apply_firmware_status,
    "configuration": connection.apply_configuration,
    "configured": connection.apply_configured,
    "message": connection.apply_message,
    "command": connection.apply_command,
    "status": outlets.apply_status,
    "transaction": sessions.apply_transaction,
    "meter_values": sessions.apply_meter_values,
    # "refused" is not a charger's event: chargers.events.apply records refusals globally.
}

VALIDATORS: dict[Kind, Callable[[Any], None]] = {
    "transaction": sessions.validate_transaction,
    "meter_values": sessions.validate_meter_values,
    "status": outlets.validate_status,
    "configuration": connection.validate_configuration,
    "command": connection.validate_command,
}

# Kinds that prove the charger itself was talking to us at `received_at`.
ALIVE_KINDS: frozenset[Kind] = frozenset(
    {
        "connected",
        "boot",
        "heartbeat",
        "status",
        "transaction",
        "meter_values",
        "firmware_status",
        "configuration",
    }
)


def register(kind: Kind, handler: Handler, flush: Callable[[list[ChargerState]], None]) -> None:
    """The extension point for apps to the right of chargers (forwarding): their event kinds
    are applied by their own handler, which keeps its rows in `ChargerState.extra`, and written
    by their `flush(states)` in the batch's transaction, so chargers never imports them."""
    HANDLERS[kind] = handler
    if flush not in EXTRA_FLUSHES:
        EXTRA_FLUSHES.append(flush)


def validate(kind: Kind, payload: Any) -> None:
    """Raise `Rejected` when the event carries a value the database must not see."""
    if not isinstance(payload, dict):
        raise Rejected(f"{kind} payload is not an object")
    check = VALIDATORS.get(kind)
    if check is not None:
        check(payload)
