"""OCPP 2.0.1: handlers for what charging stations send, and the configuration the gateway keeps
applied (GetBaseReport then SetVariables at first connection; GetVariables of the profile's
variables, and SetVariables of those that differ, at every other boot).

As in 1.6, handlers take the camelCase payload and return the answer dict; TransactionEvent and
MeterValues are durable before they are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings

from chargers.contract import outlet_key

from . import base
from .access import access_rules, answer, answer_status
from .base import GatewayChargePoint, iso_now
from .ocpplib import request
from .profiles import ENERGY, READ_BACK_201, profile_201, same_value

logger = logging.getLogger(__name__)

_EVENTS = {"Started": "started", "Updated": "updated", "Ended": "ended"}


def samples_201(meter_values: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """2.0.1 MeterValueType list → the events' sample dicts; the unit's power-of-ten multiplier
    is applied here so every sample is in its plain unit."""
    samples = []
    for mv in meter_values or ():
        timestamp = mv.get("timestamp")
        for sv in mv.get("sampledValue") or ():
            unit_of_measure = sv.get("unitOfMeasure") or {}
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
                    "location": sv.get("location") or "",
                    "value": str(value),
                    "unit": unit_of_measure.get("unit")
                    or ("Wh" if measurand.startswith("Energy") else ""),
                }
            )
    return samples


def variable_key(
    component: dict[str, Any], variable: dict[str, Any], attribute_type: str | None = None
) -> str:
    """`Component[instance]@evse.connector/Variable[instance]` (+ `:Target` etc. for non-Actual
    attributes): one flat key per value in `Charger.configuration`."""
    key: str = component.get("name", "")
    if component.get("instance"):
        key += f"[{component['instance']}]"
    evse = component.get("evse") or {}
    if evse.get("id") is not None:
        key += f"@{evse['id']}"
        if evse.get("connectorId") is not None:
            key += f".{evse['connectorId']}"
    key += "/" + variable.get("name", "")
    if variable.get("instance"):
        key += f"[{variable['instance']}]"
    if attribute_type and attribute_type != "Actual":
        key += f":{attribute_type}"
    return key


# --- handlers: async (cp, payload) -> answer ---------------------------------------------------


async def boot_notification(cp: ChargePoint201, p: dict[str, Any]) -> dict[str, Any]:
    """Always Accepted (the identity was checked at the upgrade), with our heartbeat interval;
    what it reports is recorded on the charger. Configuration follows the answer."""
    interval = settings.GATEWAY_HEARTBEAT_INTERVAL
    station = p["chargingStation"]
    firmware = station.get("firmwareVersion") or ""
    cp.emit(
        "boot",
        {
            "vendor": station.get("vendorName") or "",
            "model": station.get("model") or "",
            "serial": station.get("serialNumber") or "",
            "firmware": firmware,
            "ocpp_version": "2.0.1",
            "heartbeat_interval": interval,
        },
    )
    cp.accept_boot(firmware)
    return {"currentTime": iso_now(), "interval": interval, "status": "Accepted"}


async def heartbeat(cp: ChargePoint201, p: dict[str, Any]) -> dict[str, Any]:
    """Proof of life: updates `last_seen`."""
    cp.emit("heartbeat")
    return {"currentTime": iso_now()}


async def status_notification(cp: ChargePoint201, p: dict[str, Any]) -> dict[str, Any]:
    """Connector status of (EVSE, connector)."""
    cp.emit(
        "status",
        {
            "evse_id": p["evseId"],
            "connector_id": p["connectorId"],
            "status": p["connectorStatus"],
            "error_code": "",
            "timestamp": p["timestamp"],
        },
    )
    return {}


async def authorize(cp: ChargePoint201, p: dict[str, Any]) -> dict[str, Any]:
    """Accepted when the token may charge on at least one EVSE of the station now (its card and
    the rules of use: `ocpp_gateway.access`), else why not (Invalid, Blocked, Expired,
    NotAtThisLocation, NotAtThisTime, NoCredit); the token type (ISO14443, Local…) does not
    matter: the same UID is the same card."""
    status = await answer_status(cp, p["idToken"]["idToken"], evse_id=None, action="Authorize")
    return {"idTokenInfo": {"status": status}}


async def transaction_event(cp: ChargePoint201, p: dict[str, Any]) -> dict[str, Any]:
    """Started / Updated / Ended, in any order and possibly replayed (offline queue): the worker
    upserts by transaction id. Durable before answered; then an idToken gets its status from
    what is known — the decision (served from cache when the database is away) or, when even
    that fails, no idTokenInfo (optional in the response) — never a CALLERROR for a recorded
    event.

    Started, or Updated when the driver authorizes after plugging in, is asked the rules of use
    for this EVSE before it is recorded, so a start on a free-charging outlet is recorded free.
    A station whose authorization is off (`AuthCtrlr.Enabled` false, which Sparklin sets on
    free-charging stations) starts without a token — none, or type NoAuthorization with an empty
    idToken — and its Started is free when the outlet's rules say so. An event queued offline is
    accepted and, when a rule would have refused it, flagged. Other updates (meter values of a
    session already allowed, which may run past the end of a window) and the end only get the
    card's status."""
    evse = p.get("evse") or {}
    outlet = outlet_key(evse.get("id"), evse.get("connectorId"))
    id_token = (p.get("idToken") or {}).get("idToken")
    info = p["transactionInfo"]
    event_type = p["eventType"]
    ask_rules = event_type == "Started" or (
        event_type == "Updated" and p.get("triggerReason") == "Authorized"
    )
    decision, free, failed = None, False, False
    if ask_rules:
        try:
            if id_token:
                decision = await answer(
                    cp,
                    id_token,
                    evse_id=evse.get("id"),
                    action="TransactionEvent",
                    offline=bool(p.get("offline")),
                )
                free = decision.free
            elif event_type == "Started":
                free = await access_rules(cp.gateway).free_outlet(cp, evse.get("id"))
        except Exception:
            failed = True
            logger.warning("%s: TransactionEvent decision failed", cp.id, exc_info=True)
    event: dict[str, Any] = {
        "event": _EVENTS[event_type],
        "transaction_id": info["transactionId"],
        "evse_id": outlet[0] if outlet else evse.get("id"),
        "connector_id": outlet[1] if outlet else None,
        "id_tag": id_token,
        "timestamp": p["timestamp"],
        "meter_wh": None,
        "reason": info.get("stoppedReason") or "",
        "seq_no": p["seqNo"],
        "offline": bool(p.get("offline")),
        "samples": samples_201(p.get("meterValue")),
    }
    if free:
        event["free"] = True
    cp.emit("transaction", event)
    await cp.sync()
    if not id_token or failed:
        return {}
    if decision is not None:
        return {"idTokenInfo": {"status": decision.status(cp.version)}}
    try:
        status = (await cp.gateway.decisions.authorize(cp.community_id, id_token))["status"]
    except Exception:
        logger.warning("%s: TransactionEvent answered without idTokenInfo", cp.id, exc_info=True)
        return {}
    return {"idTokenInfo": {"status": status}}


async def meter_values(cp: ChargePoint201, p: dict[str, Any]) -> dict[str, Any]:
    """Samples outside TransactionEvent: attached to the session in progress on the EVSE;
    durable before answered."""
    outlet = outlet_key(p["evseId"], None)
    cp.emit(
        "meter_values",
        {
            "transaction_id": None,
            "evse_id": p["evseId"],
            "connector_id": outlet[1] if outlet else None,
            "samples": samples_201(p["meterValue"]),
        },
    )
    await cp.sync()
    return {}


async def notify_report(cp: ChargePoint201, p: dict[str, Any]) -> dict[str, Any]:
    """A part of the report asked by GetBaseReport: merged into `Charger.configuration`."""
    values = {}
    for item in p.get("reportData") or ():
        for attribute in item.get("variableAttribute") or ():
            key = variable_key(
                item.get("component") or {}, item.get("variable") or {}, attribute.get("type")
            )
            values[key] = attribute.get("value")
    if values:
        cp.emit("configuration", {"values": values})
    if not p.get("tbc"):
        cp.report_done(p["requestId"])
    return {}


async def notify_event(cp: ChargePoint201, p: dict[str, Any]) -> dict[str, Any]:
    """Monitoring events: kept in the message log."""
    return {}


async def security_event_notification(cp: ChargePoint201, p: dict[str, Any]) -> dict[str, Any]:
    """Security events: kept in the message log."""
    return {}


async def firmware_status_notification(cp: ChargePoint201, p: dict[str, Any]) -> dict[str, Any]:
    cp.emit("firmware_status", {"status": p["status"]})
    return {}


class ChargePoint201(GatewayChargePoint):
    version = "2.0.1"
    __slots__ = ("_reports",)
    HANDLERS = {
        "BootNotification": boot_notification,
        "Heartbeat": heartbeat,
        "StatusNotification": status_notification,
        "Authorize": authorize,
        "TransactionEvent": transaction_event,
        "MeterValues": meter_values,
        "NotifyReport": notify_report,
        "NotifyEvent": notify_event,
        "SecurityEventNotification": security_event_notification,
        "FirmwareStatusNotification": firmware_status_notification,
    }
    PORTAL_ACTIONS = frozenset(
        {
            "SetVariables",
            "GetVariables",
            "GetBaseReport",
            "Reset",
            "RequestStartTransaction",
            "RequestStopTransaction",
            # Power management's profiles (power.charging_profiles).
            "SetChargingProfile",
            "ClearChargingProfile",
            # Offline authorization (rules.locallists): the list, and its version checked
            # after each boot or reconnection.
            "SendLocalList",
            "GetLocalListVersion",
            # Fleet operations (chargers.operations).
            "UnlockConnector",
            "ChangeAvailability",
            "TriggerMessage",
        }
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reports: dict[int, asyncio.Event] | None = None  # GetBaseReport ids awaited

    def report_done(self, request_id: int) -> None:
        if self._reports and request_id in self._reports:
            self._reports[request_id].set()

    def applied_configuration(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action != "SetVariables":
            return {}
        return {
            variable_key(item.get("component") or {}, item.get("variable") or {}): item.get(
                "attributeValue"
            )
            for item in payload.get("setVariableData") or ()
        }

    # --- configuration ------------------------------------------------------------------------
    def profile(self) -> list[tuple[str, str, str]]:
        """The variables this station should have: its vendor's, and the main meter's (EVSE 0
        aligned data) when it is a site's OCPP meter."""
        return profile_201(self.charger.get("vendor"), bool(self.charger.get("main_meter")))

    async def configure(self) -> None:
        """Full configuration (first connection, firmware change, "Reconfigure"): ask for the
        configuration inventory (it arrives as NotifyReport parts), then set the profile in one
        SetVariables."""
        request_id = next(base._request_ids)
        if self._reports is None:
            self._reports = {}
        done = self._reports[request_id] = asyncio.Event()
        try:
            status, _ = await self.command(
                "GetBaseReport",
                request(
                    "2.0.1",
                    "GetBaseReport",
                    request_id=request_id,
                    report_base="ConfigurationInventory",
                ),
            )
            if status == "accepted":
                # Let the report finish first, so what it says is stored before what we set
                # (its parts are merged in arrival order).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), self._timeout)
        finally:
            self._reports.pop(request_id, None)
            if not self._reports:
                self._reports = None
        await self._set(self.profile())

    async def check_configuration(self) -> None:
        """At every other boot: read the profile's variables (GetVariables) and set those that
        differ (a factory reset or a replaced unit loses them without any firmware change).
        Variables the station does not know are left alone. The read is kept in the message log,
        not as a command row; the smart-charging variables it reports (`READ_BACK_201`) are
        stored."""
        wanted = self.profile()
        asked = [(c, v) for c, v, _ in wanted] + list(READ_BACK_201)
        status, result = await self.command(
            "GetVariables",
            request(
                "2.0.1",
                "GetVariables",
                get_variable_data=[
                    {"component": {"name": c}, "variable": {"name": v}} for c, v in asked
                ],
            ),
            record=False,
        )
        if result is None:
            return  # no usable answer: nothing to compare; the next boot tries again
        current, unknown = {}, set()
        for item in result.get("getVariableResult") or ():
            key = variable_key(item.get("component") or {}, item.get("variable") or {})
            if item.get("attributeStatus") == "Accepted":
                current[key] = item.get("attributeValue")
            elif item.get("attributeStatus") in ("UnknownComponent", "UnknownVariable"):
                unknown.add(key)
        read_back = {
            f"{c}/{v}": current[f"{c}/{v}"]
            for c, v in READ_BACK_201
            if current.get(f"{c}/{v}") is not None
        }
        if read_back:
            self.emit("configuration", {"values": read_back})
        differing = [
            (c, v, value)
            for c, v, value in wanted
            if f"{c}/{v}" not in unknown and not same_value(current.get(f"{c}/{v}"), value)
        ]
        if differing:
            logger.info("%s: configuration differs from its profile, re-applying", self.id)
            await self._set(differing)

    async def _set(self, wanted: list[tuple[str, str, str]]) -> None:
        status, result = await self.command(
            "SetVariables",
            request(
                "2.0.1",
                "SetVariables",
                set_variable_data=[
                    {
                        "attribute_value": value,
                        "component": {"name": component},
                        "variable": {"name": variable},
                    }
                    for component, variable, value in wanted
                ],
            ),
        )
        if result is not None:
            applied = {}
            for item in result.get("setVariableResult") or ():
                if item.get("attributeStatus") in ("Accepted", "RebootRequired"):
                    key = variable_key(item.get("component") or {}, item.get("variable") or {})
                    match = [v for c, n, v in wanted if key == f"{c}/{n}"]
                    if match:
                        applied[key] = match[0]
            if applied:
                self.emit("configuration", {"values": applied})
        self.emit("configured", {})
