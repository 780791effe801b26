"""OCPP 1.6J: handlers for what chargers send, and the configuration applied at first connection.

Each handler translates the payload into an event for `chargers.events` and, where the charger
waits for a decision (Boot, Authorize, StartTransaction), answers from the gateway's cached reads.
Handlers take `**kwargs` so vendor extensions and optional fields never break them.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal

from django.conf import settings
from ocpp.charge_point import camel_to_snake_case
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16Base
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action, DataTransferStatus, RegistrationStatus

from .base import GatewayChargePoint, iso_now
from .profiles import ENERGY, profile_16


def samples_16(meter_values) -> list[dict]:
    """1.6 MeterValue list (snake_case keys) → the events' sample dicts. Signed values are
    skipped (their value is an opaque blob, not a number)."""
    samples = []
    for mv in meter_values or ():
        timestamp = mv.get("timestamp")
        for sv in mv.get("sampled_value") or ():
            if sv.get("format") == "SignedData":
                continue
            samples.append(
                {
                    "timestamp": timestamp,
                    "measurand": sv.get("measurand") or ENERGY,
                    "phase": sv.get("phase") or "",
                    "context": sv.get("context") or "Sample.Periodic",
                    "value": str(sv.get("value")),
                    "unit": sv.get("unit")
                    or ("Wh" if (sv.get("measurand") or ENERGY).startswith("Energy") else ""),
                }
            )
    return samples


class ChargePoint16(GatewayChargePoint, ChargePoint16Base):
    version = "1.6"
    PORTAL_ACTIONS = frozenset(
        {
            "ChangeConfiguration",
            "GetConfiguration",
            "Reset",
            "RemoteStartTransaction",
            "RemoteStopTransaction",
        }
    )

    @staticmethod
    def build_call(action: str, payload: dict):
        """A portal command's request object."""
        return getattr(call, action)(**camel_to_snake_case(payload))

    def applied_configuration(self, action: str, payload: dict) -> dict:
        if action == "ChangeConfiguration" and payload.get("key"):
            return {payload["key"]: payload.get("value")}
        return {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Chargers repeat a StartTransaction whose answer they missed; the same start must get
        # the same transaction id (kept per connection, bounded).
        self._recent_starts: OrderedDict[tuple, int] = OrderedDict()

    # --- core profile -------------------------------------------------------------------------
    @on(Action.boot_notification, skip_schema_validation=True)
    async def on_boot_notification(self, charge_point_vendor, charge_point_model, **kwargs):
        """Always Accepted (the identity was checked at the upgrade), with our heartbeat
        interval; what it reports is recorded on the charger."""
        interval = settings.GATEWAY_HEARTBEAT_INTERVAL
        firmware = kwargs.get("firmware_version") or ""
        self.emit(
            "boot",
            {
                "vendor": charge_point_vendor,
                "model": charge_point_model,
                "serial": kwargs.get("charge_point_serial_number")
                or kwargs.get("charge_box_serial_number")
                or "",
                "firmware": firmware,
                "ocpp_version": "1.6",
                "heartbeat_interval": interval,
            },
        )
        self.accept_boot(firmware)
        return call_result.BootNotification(
            current_time=iso_now(), interval=interval, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat, skip_schema_validation=True)
    async def on_heartbeat(self, **kwargs):
        """Proof of life: updates `last_seen`."""
        self.emit("heartbeat")
        return call_result.Heartbeat(current_time=iso_now())

    @on(Action.status_notification, skip_schema_validation=True)
    async def on_status_notification(self, connector_id, error_code, status, **kwargs):
        """Outlet status; connector 0 is the charger itself (kept in the log only)."""
        self.emit(
            "status",
            {
                "evse_id": connector_id,
                "connector_id": connector_id,
                "status": status,
                "error_code": error_code,
                "timestamp": kwargs.get("timestamp"),
            },
        )
        return call_result.StatusNotification()

    @on(Action.authorize, skip_schema_validation=True)
    async def on_authorize(self, id_tag, **kwargs):
        """Accepted / Invalid / Blocked from the charger's community cards."""
        decision = await self.gateway.decisions.authorize(self.community_id, id_tag)
        return call_result.Authorize(id_tag_info={"status": decision["status"]})

    @on(Action.start_transaction, skip_schema_validation=True)
    async def on_start_transaction(self, connector_id, id_tag, meter_start, timestamp, **kwargs):
        """Allocates the transaction id (unique across gateways) and answers the card's
        status; the session is created by the worker from the event."""
        key = (connector_id, id_tag, timestamp, meter_start)
        transaction_id = self._recent_starts.get(key)
        if transaction_id is None:
            transaction_id = await self.gateway.decisions.next_transaction_id()
            self._recent_starts[key] = transaction_id
            while len(self._recent_starts) > 32:
                self._recent_starts.popitem(last=False)
        decision = await self.gateway.decisions.authorize(self.community_id, id_tag)
        self.emit(
            "transaction",
            {
                "event": "started",
                "transaction_id": str(transaction_id),
                "evse_id": connector_id,
                "connector_id": connector_id,
                "id_tag": id_tag,
                "timestamp": timestamp,
                "meter_wh": meter_start,
                "reason": "",
                "seq_no": None,
                "offline": False,
                "samples": [],
            },
        )
        return call_result.StartTransaction(
            transaction_id=transaction_id, id_tag_info={"status": decision["status"]}
        )

    @on(Action.meter_values, skip_schema_validation=True)
    async def on_meter_values(self, connector_id, meter_value, **kwargs):
        """Live energy of a session (and other measurands, kept as samples)."""
        transaction_id = kwargs.get("transaction_id")
        self.emit(
            "meter_values",
            {
                "transaction_id": str(transaction_id) if transaction_id is not None else None,
                "evse_id": connector_id,
                "connector_id": connector_id,
                "samples": samples_16(meter_value),
            },
        )
        return call_result.MeterValues()

    @on(Action.stop_transaction, skip_schema_validation=True)
    async def on_stop_transaction(self, meter_stop, timestamp, transaction_id, **kwargs):
        """Ends the session (a replayed stop changes nothing in the worker); transactionData
        samples are kept."""
        id_tag = kwargs.get("id_tag")
        self.emit(
            "transaction",
            {
                "event": "ended",
                "transaction_id": str(transaction_id),
                "evse_id": None,
                "connector_id": None,
                "id_tag": id_tag,
                "timestamp": timestamp,
                "meter_wh": meter_stop,
                "reason": kwargs.get("reason") or "",
                "seq_no": None,
                "offline": False,
                "samples": samples_16(kwargs.get("transaction_data")),
            },
        )
        if id_tag:
            decision = await self.gateway.decisions.authorize(self.community_id, id_tag)
            return call_result.StopTransaction(id_tag_info={"status": decision["status"]})
        return call_result.StopTransaction()

    @on(Action.data_transfer, skip_schema_validation=True)
    async def on_data_transfer(self, vendor_id, **kwargs):
        """No vendor extension is understood yet: the spec's answer is UnknownVendorId (the
        frame stays in the message log)."""
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    @on(Action.firmware_status_notification, skip_schema_validation=True)
    async def on_firmware_status_notification(self, status, **kwargs):
        self.emit("firmware_status", {"status": status})
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification, skip_schema_validation=True)
    async def on_diagnostics_status_notification(self, status, **kwargs):
        """Recorded in the message log only."""
        return call_result.DiagnosticsStatusNotification()

    # --- configuration ------------------------------------------------------------------------
    async def configure(self) -> None:
        """Read the configuration, then set what differs from the vendor profile."""
        status, result = await self.command(call.GetConfiguration())
        current = {}
        if result is not None:
            for item in result.configuration_key or ():
                current[item["key"]] = item.get("value")
            if current:
                self.emit("configuration", {"values": current})
        wanted = profile_16(self.charger.get("vendor"))
        applied = {}
        for key, value in wanted:
            if _same(current.get(key), value):
                continue
            status, _ = await self.command(call.ChangeConfiguration(key=key, value=value))
            if status == "rejected" and key == "MeterValuesSampledData" and value != ENERGY:
                # Some meters cannot report power: energy alone is what billing needs.
                value = ENERGY
                status, _ = await self.command(call.ChangeConfiguration(key=key, value=value))
            if status == "accepted":
                applied[key] = value
        if applied:
            self.emit("configuration", {"values": applied})
        self.emit("configured", {})


def _same(current, wanted: str) -> bool:
    if current is None:
        return False
    if "," in wanted or "," in str(current):
        return [v.strip() for v in str(current).split(",")] == wanted.split(",")
    try:
        return Decimal(str(current)) == Decimal(wanted)
    except ArithmeticError:
        return str(current).strip() == wanted
