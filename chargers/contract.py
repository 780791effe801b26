"""The gateway ↔ worker contract: the events the gateway emits and `chargers.events` applies.

Both sides import these types; nothing else crosses the broker. An event is JSON (the Celery
serializer is JSON): strings, numbers, booleans, None, lists and dicts of those — never a
structure a charger sent that the gateway has not checked. What a charger sent verbatim travels
as text (`MessagePayload.frame`), so no frame can make a task unserialisable.

Every event has the same envelope::

    {"identity": "CP-01", "kind": "status", "payload": {...}, "received_at": "2026-…+00:00"}

`received_at` is the gateway's clock when the frame arrived (ISO 8601, UTC).
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

Kind = Literal[
    "connected",
    "disconnected",
    "refused",
    "message",
    "boot",
    "heartbeat",
    "status",
    "transaction",
    "meter_values",
    "firmware_status",
    "command",
    "configuration",
    "configured",
    # Forwarding to third-party operators (forwarding.events applies them).
    "operator_state",
    "operator_frame",
    "access",  # a refusal decided by a rule of use (applied by rules.events)
]


class Event(TypedDict):
    identity: str
    kind: Kind
    payload: dict
    received_at: str


class ConnectedPayload(TypedDict):
    ocpp_version: str  # "1.6" | "2.0.1"
    remote_address: str
    gateway: str  # the instance id of the gateway process holding the connection


class DisconnectedPayload(TypedDict, total=False):
    code: int | None  # the websocket close code
    # When this connection opened: the `received_at` of its `connected` event (ISO 8601, UTC),
    # so the worker closes exactly that connection interval whatever the order it applies them.
    # Absent from events queued by an older gateway.
    connected_at: str


class RefusedPayload(TypedDict):
    reason: str  # chargers.models.UnknownCharger.Reason
    remote_address: str


class MessagePayload(TypedDict, total=False):
    """One frame of the OCPP message log, logged once, as the text that crossed the socket.

    `frame` is the raw frame (truncated by the gateway to a bounded size); the worker decodes
    it with a bounded depth for display and keeps it as text when it cannot."""

    direction: Literal["in", "out"]
    message_type: int  # 2 CALL, 3 CALLRESULT, 4 CALLERROR, 0 unparseable
    unique_id: str
    action: str
    frame: str


class BootPayload(TypedDict):
    vendor: str
    model: str
    serial: str
    firmware: str
    ocpp_version: str
    heartbeat_interval: int


class StatusPayload(TypedDict):
    evse_id: int
    connector_id: int | None
    status: str
    error_code: str
    timestamp: str | None  # the charger's clock, informative only


class Sample(TypedDict):
    timestamp: str | None
    measurand: str
    phase: str
    context: str
    value: str  # a decimal string in `unit`
    unit: str
    location: NotRequired[str]  # OCPP SampledValue location (Outlet, Inlet …), "" when not sent


class TransactionPayload(TypedDict):
    event: Literal["started", "updated", "ended"]
    transaction_id: str
    evse_id: int | None
    connector_id: int | None
    id_tag: str | None
    timestamp: str | None
    meter_wh: int | float | str | None
    reason: str
    seq_no: int | None
    offline: bool
    samples: list[Sample]
    # A start allowed by a free-charging rule of use (`rules.evaluation.Decision.free`): the
    # session is priced 0 and shown as free. Absent (false) from every other event.
    free: NotRequired[bool]


class MeterValuesPayload(TypedDict):
    transaction_id: str | None
    evse_id: int
    connector_id: int | None
    samples: list[Sample]


class FirmwareStatusPayload(TypedDict):
    status: str


class CommandPayload(TypedDict):
    uid: str
    action: str
    payload: dict
    status: str  # chargers.models.ChargerCommand.Status
    response: dict | None


class ConfigurationPayload(TypedDict):
    values: dict[str, str | None]


class OperatorStatePayload(TypedDict):
    """The state of one relay to an operator (`forwarding.OperatorConnection`), as the gateway
    holding the charger sees it."""

    operator: int  # OperatorConnection pk
    connected: bool
    last_message_at: str | None  # ISO 8601, the last frame exchanged with the operator
    buffered: int  # frames waiting in the gateway's durable buffer
    last_error: str
    gateway: str


class OperatorFramePayload(TypedDict):
    """One frame relayed to (`up`) or from (`down`) an operator, raw text like `message`."""

    operator: int
    direction: Literal["up", "down"]
    message_type: int
    unique_id: str
    action: str
    frame: str
    note: str  # what the gateway did: refused, fallback, dropped from a full buffer…


def outlet_key(evse_id, connector_id) -> tuple[int, int] | None:
    """(evse, connector) of the outlet an event is about, or None for the charger itself (1.6
    connector 0, 2.0.1 EVSE 0 or no EVSE). 2.0.1 may name only the EVSE: an EVSE alone means
    its connector 1. The one place this rule lives; the gateway and the worker both use it."""
    if not evse_id:
        return None
    return int(evse_id), int(connector_id or 1)
