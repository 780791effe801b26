"""The worker side of forwarding: the gateway's `operator_state` and `operator_frame` events
(shapes in `chargers.contract`), applied through the pipeline's extension point
(`chargers.events.handlers.register`, done in `ForwardingConfig.ready`).

Handlers only collect rows on the charger's `ChargerState`; `flush` writes them in the batch's
transaction: frames inserted ON CONFLICT DO NOTHING (a batch delivered twice inserts nothing),
the state as one UPDATE per operator that only moves forward in time. An operator id that does
not belong to the event's charger is ignored (the gateway read it for that charger; a stale or
forged id must not touch another charger's row)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chargers.contract import OperatorFramePayload, OperatorStatePayload
from chargers.events.batch import ChargerState
from chargers.events.sql import insert_rows
from chargers.events.values import clean_text, frame_payload, parse_time, small_int

from .models import ForwardedFrame, OperatorConnection

FRAME_COLUMNS = [
    "community",
    "operator",
    "direction",
    "message_type",
    "unique_id",
    "action",
    "payload",
    "note",
    "at",
]
_STATE = "forwarding.state"
_FRAMES = "forwarding.frames"


def _operator_id(value: Any) -> int | None:
    number = small_int(value)
    return number if number is not None and number > 0 else None


def apply_state(st: ChargerState, p: OperatorStatePayload, at: datetime) -> None:
    operator = _operator_id(p.get("operator"))
    if operator is None:
        return
    st.extra.setdefault(_STATE, []).append((operator, p, at))


def apply_frame(st: ChargerState, p: OperatorFramePayload, at: datetime) -> None:
    operator = _operator_id(p.get("operator"))
    if operator is None:
        return
    message_type = small_int(p.get("message_type"))
    if message_type not in (2, 3, 4):
        message_type = 0
    direction = p.get("direction")
    st.extra.setdefault(_FRAMES, []).append(
        (
            st.charger.community_id,
            operator,
            direction if direction in ("up", "down") else ForwardedFrame.Direction.UP,
            message_type,
            clean_text(p.get("unique_id"), 64),
            clean_text(p.get("action"), 60),
            frame_payload(str(p.get("frame") or ""), message_type),
            clean_text(p.get("note"), 200),
            at,
        )
    )


def flush(states: list[ChargerState]) -> None:
    wanted = {
        st.charger.pk: {row[0] for row in st.extra.get(_STATE, ())}
        | {row[1] for row in st.extra.get(_FRAMES, ())}
        for st in states
        if _STATE in st.extra or _FRAMES in st.extra
    }
    if not wanted:
        return
    ids = set().union(*wanted.values())
    owners = dict(
        OperatorConnection.objects.with_scopes_disabled()
        .filter(pk__in=ids)
        .values_list("pk", "charger_id")
    )
    frames = []
    latest: dict[int, tuple[datetime, OperatorStatePayload]] = {}
    for st in states:
        pk = st.charger.pk
        frames += [row for row in st.extra.get(_FRAMES, ()) if owners.get(row[1]) == pk]
        for operator, payload, at in st.extra.get(_STATE, ()):
            if owners.get(operator) != pk:
                continue
            if operator not in latest or at >= latest[operator][0]:
                latest[operator] = (at, payload)
    insert_rows(ForwardedFrame, FRAME_COLUMNS, frames)
    for operator, (at, p) in latest.items():
        # Only forward in time: a batch applied late never rolls a newer state back.
        OperatorConnection.objects.with_scopes_disabled().filter(pk=operator).exclude(
            state_at__gt=at
        ).update(
            connected=bool(p.get("connected")),
            state_at=at,
            last_message_at=parse_time(p.get("last_message_at")),
            buffered=max(0, small_int(p.get("buffered")) or 0),
            last_error=clean_text(p.get("last_error"), 300),
            gateway=clean_text(p.get("gateway"), 100),
        )
