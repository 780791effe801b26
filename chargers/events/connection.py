"""The charger itself: connection, boot, heartbeat, firmware, configuration, the commands sent
to it and the OCPP message log."""

from __future__ import annotations

from datetime import datetime

from ..contract import (
    BootPayload,
    CommandPayload,
    ConfigurationPayload,
    ConnectedPayload,
    DisconnectedPayload,
    FirmwareStatusPayload,
    MessagePayload,
)
from ..models import ChargerCommand, OcppMessage
from . import uptime
from .batch import ChargerState, canonical_uuid
from .sessions import close_sessions_at_reboot
from .values import Rejected, bounded_json, clean_text, frame_payload, small_int

_COMMAND_RANK: dict[str, int] = {
    ChargerCommand.Status.PENDING: 0,
    ChargerCommand.Status.SENT: 1,
    ChargerCommand.Status.ACCEPTED: 2,
    ChargerCommand.Status.REJECTED: 2,
    ChargerCommand.Status.FAILED: 2,
    ChargerCommand.Status.TIMED_OUT: 2,
}
_MAX_CONFIGURATION_KEYS = 1_000


def apply_connected(st: ChargerState, p: ConnectedPayload, at: datetime) -> None:
    uptime.record_connected(st, at)  # whatever the order: intervals are upserts
    c = st.charger
    if c.connection_changed_at is not None and at < c.connection_changed_at:
        return
    st.set(connected=True, connected_since=at, connection_changed_at=at)
    # Which gateway process holds the charger now (shown on the charger page).
    st.set(gateway=clean_text(p.get("gateway"), 100))
    if p.get("ocpp_version"):
        st.set(ocpp_version=clean_text(p["ocpp_version"], 8))


def apply_disconnected(st: ChargerState, p: DisconnectedPayload, at: datetime) -> None:
    uptime.record_disconnected(st, p, at)
    c = st.charger
    if c.connection_changed_at is not None and at < c.connection_changed_at:
        return
    st.set(connected=False, connection_changed_at=at)


def apply_heartbeat(st: ChargerState, p: dict, at: datetime) -> None:
    """Nothing but `last_seen`, written once per batch."""


def apply_boot(st: ChargerState, p: BootPayload, at: datetime) -> None:
    """What the charger says it is; a boot also ends the sessions it never stopped."""
    c = st.charger
    if c.last_boot_at is not None and at < c.last_boot_at:
        return
    st.set(
        last_boot_at=at,
        reported_vendor=clean_text(p.get("vendor"), 50),
        reported_model=clean_text(p.get("model"), 50),
        reported_serial=clean_text(p.get("serial"), 50),
        firmware_version=clean_text(p.get("firmware"), 50),
    )
    if p.get("ocpp_version"):
        st.set(ocpp_version=clean_text(p["ocpp_version"], 8))
    interval = small_int(p.get("heartbeat_interval"))
    if interval and interval > 0:
        st.set(heartbeat_interval=interval)
    close_sessions_at_reboot(st, at)


def apply_firmware_status(st: ChargerState, p: FirmwareStatusPayload, at: datetime) -> None:
    st.set(firmware_status=clean_text(p.get("status"), 40))


def validate_configuration(p: ConfigurationPayload) -> None:
    values = p.get("values")
    if values is not None and not isinstance(values, dict):
        raise Rejected("configuration values are not an object")
    if values and len(values) > _MAX_CONFIGURATION_KEYS:
        raise Rejected(f"{len(values)} configuration keys")


def apply_configuration(st: ChargerState, p: ConfigurationPayload, at: datetime) -> None:
    values = p.get("values") or {}
    if values:
        cleaned = {
            clean_text(k, 200): (None if v is None else clean_text(v, 2_000))
            for k, v in values.items()
        }
        st.set(configuration={**(st.charger.configuration or {}), **cleaned})


def apply_configured(st: ChargerState, p: dict, at: datetime) -> None:
    if st.charger.configured_at is None or at > st.charger.configured_at:
        st.set(configured_at=at)


def apply_message(st: ChargerState, p: MessagePayload, at: datetime) -> None:
    """One row of the message log. The frame travels as text (`frame`) and is decoded here with
    bounded depth and size; events queued by an older gateway carry a decoded `payload`."""
    message_type = small_int(p.get("message_type"))
    if message_type not in (2, 3, 4):
        message_type = 0
    if "frame" in p:
        body = frame_payload(str(p.get("frame") or ""), message_type)
    else:
        legacy = p.get("payload")
        body = bounded_json(legacy) if legacy is not None else {}
    direction = p.get("direction")
    st.messages.append(
        (  # batch.MESSAGE_COLUMNS
            st.charger.community_id,
            st.charger.pk,
            direction if direction in ("in", "out") else OcppMessage.Direction.IN,
            message_type,
            clean_text(p.get("unique_id"), 64),
            clean_text(p.get("action"), 60),
            body,
            at,
        )
    )


def validate_command(p: CommandPayload) -> None:
    if canonical_uuid(str(p.get("uid") or "")) is None:
        raise Rejected(f"command uid is not a UUID: {str(p.get('uid'))[:80]!r}")


def apply_command(st: ChargerState, p: CommandPayload, at: datetime) -> None:
    """A command's progress, by uid; its status only moves forward (pending → sent → answer)."""
    uid = canonical_uuid(str(p["uid"])) or ""  # checked by validate_command
    status = p.get("status") or ChargerCommand.Status.PENDING
    if status not in _COMMAND_RANK:
        status = ChargerCommand.Status.FAILED
    response = bounded_json(p["response"]) if p.get("response") is not None else None
    command = st.command(uid)
    if command is None:
        command = ChargerCommand(
            uid=uid,
            community_id=st.charger.community_id,
            charger=st.charger,
            action=clean_text(p.get("action"), 60),
            payload=bounded_json(p.get("payload") or {}),
            status=status,
            response=response,
            created_at=at,
        )
        st.batch.commands[uid] = command
        st.new_commands.append(command)
        return
    if _COMMAND_RANK.get(status, 0) > _COMMAND_RANK.get(command.status, 0):
        command.status = status
        if response is not None:
            command.response = response
        if command.pk is not None:
            st.dirty_commands[command.pk] = command
