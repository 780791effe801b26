"""OCPP 2.0.1: handlers for what charging stations send, and the configuration applied at first
connection (GetBaseReport, then SetVariables on SampledDataCtrlr and OCPPCommCtrlr).

As in 1.6, handlers translate payloads into events and answer decisions from cached reads; they
take `**kwargs` so optional fields and customData never break them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from decimal import Decimal, InvalidOperation

from django.conf import settings
from ocpp.charge_point import camel_to_snake_case
from ocpp.routing import on
from ocpp.v201 import ChargePoint as ChargePoint201Base
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action, RegistrationStatusEnumType, ReportBaseEnumType

from .base import GatewayChargePoint, iso_now
from .profiles import ENERGY, profile_201

_request_ids = itertools.count(1)


def samples_201(meter_values) -> list[dict]:
    """2.0.1 MeterValueType list (snake_case keys) → the events' sample dicts; the unit's
    power-of-ten multiplier is applied here so every sample is in its plain unit."""
    samples = []
    for mv in meter_values or ():
        timestamp = mv.get("timestamp")
        for sv in mv.get("sampled_value") or ():
            unit_of_measure = sv.get("unit_of_measure") or {}
            measurand = sv.get("measurand") or ENERGY
            try:
                value = Decimal(str(sv.get("value")))
                multiplier = int(unit_of_measure.get("multiplier") or 0)
                if multiplier:
                    value = value.scaleb(multiplier)
            except (InvalidOperation, ValueError, TypeError):
                continue
            samples.append(
                {
                    "timestamp": timestamp,
                    "measurand": measurand,
                    "phase": sv.get("phase") or "",
                    "context": sv.get("context") or "Sample.Periodic",
                    "value": str(value),
                    "unit": unit_of_measure.get("unit")
                    or ("Wh" if measurand.startswith("Energy") else ""),
                }
            )
    return samples


def variable_key(component: dict, variable: dict, attribute_type: str | None = None) -> str:
    """`Component[instance]@evse.connector/Variable[instance]` (+ `:Target` etc. for non-Actual
    attributes): one flat key per value in `Charger.configuration`."""
    key = component.get("name", "")
    if component.get("instance"):
        key += f"[{component['instance']}]"
    evse = component.get("evse") or {}
    if evse.get("id") is not None:
        key += f"@{evse['id']}"
        if evse.get("connector_id") is not None:
            key += f".{evse['connector_id']}"
    key += "/" + variable.get("name", "")
    if variable.get("instance"):
        key += f"[{variable['instance']}]"
    if attribute_type and attribute_type != "Actual":
        key += f":{attribute_type}"
    return key


class ChargePoint201(GatewayChargePoint, ChargePoint201Base):
    version = "2.0.1"
    PORTAL_ACTIONS = frozenset(
        {
            "SetVariables",
            "GetVariables",
            "GetBaseReport",
            "Reset",
            "RequestStartTransaction",
            "RequestStopTransaction",
        }
    )

    @staticmethod
    def build_call(action: str, payload: dict):
        """A portal command's request object."""
        return getattr(call, action)(**camel_to_snake_case(payload))

    def applied_configuration(self, action: str, payload: dict) -> dict:
        if action != "SetVariables":
            return {}
        return {
            variable_key(item.get("component") or {}, item.get("variable") or {}): item.get(
                "attributeValue"
            )
            for item in payload.get("setVariableData") or ()
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._reports_done: dict[int, asyncio.Event] = {}

    @on(Action.boot_notification, skip_schema_validation=True)
    async def on_boot_notification(self, charging_station, reason, **kwargs):
        """Always Accepted (the identity was checked at the upgrade), with our heartbeat
        interval; what it reports is recorded on the charger."""
        interval = settings.GATEWAY_HEARTBEAT_INTERVAL
        firmware = charging_station.get("firmware_version") or ""
        self.emit(
            "boot",
            {
                "vendor": charging_station.get("vendor_name") or "",
                "model": charging_station.get("model") or "",
                "serial": charging_station.get("serial_number") or "",
                "firmware": firmware,
                "ocpp_version": "2.0.1",
                "heartbeat_interval": interval,
            },
        )
        self.accept_boot(firmware)
        return call_result.BootNotification(
            current_time=iso_now(), interval=interval, status=RegistrationStatusEnumType.accepted
        )

    @on(Action.heartbeat, skip_schema_validation=True)
    async def on_heartbeat(self, **kwargs):
        """Proof of life: updates `last_seen`."""
        self.emit("heartbeat")
        return call_result.Heartbeat(current_time=iso_now())

    @on(Action.status_notification, skip_schema_validation=True)
    async def on_status_notification(
        self, timestamp, connector_status, evse_id, connector_id, **kwargs
    ):
        """Connector status of (EVSE, connector)."""
        self.emit(
            "status",
            {
                "evse_id": evse_id,
                "connector_id": connector_id,
                "status": connector_status,
                "error_code": "",
                "timestamp": timestamp,
            },
        )
        return call_result.StatusNotification()

    @on(Action.authorize, skip_schema_validation=True)
    async def on_authorize(self, id_token, **kwargs):
        """Accepted / Invalid / Blocked; the token type (ISO14443, Local…) does not matter: the
        same UID is the same card."""
        decision = await self.gateway.decisions.authorize(
            self.community_id, id_token.get("id_token", "")
        )
        return call_result.Authorize(id_token_info={"status": decision["status"]})

    @on(Action.transaction_event, skip_schema_validation=True)
    async def on_transaction_event(
        self, event_type, timestamp, trigger_reason, seq_no, transaction_info, **kwargs
    ):
        """Started / Updated / Ended, in any order and possibly replayed (offline queue): the
        worker upserts by transaction id and ignores seqNos already seen. An idToken gets its
        status in the answer."""
        evse = kwargs.get("evse") or {}
        id_token = (kwargs.get("id_token") or {}).get("id_token")
        event = {"Started": "started", "Updated": "updated", "Ended": "ended"}[event_type]
        samples = samples_201(kwargs.get("meter_value"))
        self.emit(
            "transaction",
            {
                "event": event,
                "transaction_id": transaction_info["transaction_id"],
                "evse_id": evse.get("id"),
                "connector_id": evse.get("connector_id", 1 if evse.get("id") else None),
                "id_tag": id_token,
                "timestamp": timestamp,
                "meter_wh": None,
                "reason": transaction_info.get("stopped_reason") or "",
                "seq_no": seq_no,
                "offline": bool(kwargs.get("offline")),
                "samples": samples,
            },
        )
        if id_token:
            decision = await self.gateway.decisions.authorize(self.community_id, id_token)
            return call_result.TransactionEvent(id_token_info={"status": decision["status"]})
        return call_result.TransactionEvent()

    @on(Action.meter_values, skip_schema_validation=True)
    async def on_meter_values(self, evse_id, meter_value, **kwargs):
        """Samples outside TransactionEvent: attached to the session in progress on the EVSE."""
        self.emit(
            "meter_values",
            {
                "transaction_id": None,
                "evse_id": evse_id,
                "connector_id": 1 if evse_id else None,
                "samples": samples_201(meter_value),
            },
        )
        return call_result.MeterValues()

    @on(Action.notify_report, skip_schema_validation=True)
    async def on_notify_report(self, request_id, generated_at, seq_no, **kwargs):
        """A part of the report asked by GetBaseReport: merged into `Charger.configuration`."""
        values = {}
        for item in kwargs.get("report_data") or ():
            for attribute in item.get("variable_attribute") or ():
                key = variable_key(
                    item.get("component") or {}, item.get("variable") or {}, attribute.get("type")
                )
                values[key] = attribute.get("value")
        if values:
            self.emit("configuration", {"values": values})
        if not kwargs.get("tbc") and request_id in self._reports_done:
            self._reports_done[request_id].set()
        return call_result.NotifyReport()

    @on(Action.notify_event, skip_schema_validation=True)
    async def on_notify_event(self, generated_at, seq_no, event_data, **kwargs):
        """Monitoring events: kept in the message log."""
        return call_result.NotifyEvent()

    @on(Action.security_event_notification, skip_schema_validation=True)
    async def on_security_event_notification(self, type, timestamp, **kwargs):  # noqa: A002
        """Security events: kept in the message log."""
        return call_result.SecurityEventNotification()

    @on(Action.firmware_status_notification, skip_schema_validation=True)
    async def on_firmware_status_notification(self, status, **kwargs):
        self.emit("firmware_status", {"status": status})
        return call_result.FirmwareStatusNotification()

    # --- configuration ------------------------------------------------------------------------
    async def configure(self) -> None:
        """Ask for the configuration inventory (it arrives as NotifyReport parts), then set the
        heartbeat and transaction energy reporting in one SetVariables."""
        request_id = next(_request_ids)
        done = self._reports_done[request_id] = asyncio.Event()
        status, _ = await self.command(
            call.GetBaseReport(
                request_id=request_id,
                report_base=ReportBaseEnumType.configuration_inventory,
            )
        )
        if status == "accepted":
            # Let the report finish first, so what it says is stored before what we set (its
            # parts are merged in arrival order). Not a wait on call(): no reply to shift.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self._response_timeout)
        self._reports_done.pop(request_id, None)
        wanted = profile_201(self.charger.get("vendor"))
        status, result = await self.command(
            call.SetVariables(
                set_variable_data=[
                    {
                        "attribute_value": value,
                        "component": {"name": component},
                        "variable": {"name": variable},
                    }
                    for component, variable, value in wanted
                ]
            )
        )
        if result is not None:
            applied = {}
            for item in result.set_variable_result or ():
                if item.get("attribute_status") in ("Accepted", "RebootRequired"):
                    key = variable_key(item.get("component") or {}, item.get("variable") or {})
                    match = [v for c, n, v in wanted if key == f"{c}/{n}"]
                    if match:
                        applied[key] = match[0]
            if applied:
                self.emit("configuration", {"values": applied})
        self.emit("configured", {})
