"""OCPP 1.6J: handlers for what chargers send, and the configuration the gateway keeps applied.

Each handler takes the payload as the charger sent it (camelCase, already validated against the
schema) and returns the answer dict. It translates the payload into an event for
`chargers.events` (shapes in `chargers.contract`) and, where the charger waits for a decision
(Boot, Authorize, StartTransaction), answers from the gateway's cached reads. Transaction and
meter messages are durable before they are answered (`await cp.sync()`).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from .access import answer, answer_status, started_offline
from .base import GatewayChargePoint, iso_now
from .ocpplib import request
from .profiles import ENERGY, FALLBACKS_16, READ_BACK_16, profile_16, same_value
from .starts import start_ids
from .upstream import relayed_transaction_id

logger = logging.getLogger(__name__)


def samples_16(meter_values: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """1.6 MeterValue list → the events' sample dicts. Signed values are skipped (their value is
    an opaque blob, not a number)."""
    samples = []
    for mv in meter_values or ():
        timestamp = mv.get("timestamp")
        for sv in mv.get("sampledValue") or ():
            if sv.get("format") == "SignedData":
                continue
            measurand = sv.get("measurand") or ENERGY
            samples.append(
                {
                    "timestamp": timestamp,
                    "measurand": measurand,
                    "phase": sv.get("phase") or "",
                    "context": sv.get("context") or "Sample.Periodic",
                    "location": sv.get("location") or "",
                    "value": str(sv.get("value")),
                    "unit": sv.get("unit") or ("Wh" if measurand.startswith("Energy") else ""),
                }
            )
    return samples


# --- handlers: async (cp, payload) -> answer ---------------------------------------------------


async def boot_notification(cp: ChargePoint16, p: dict[str, Any]) -> dict[str, Any]:
    """Always Accepted (the identity was checked at the upgrade), with our heartbeat interval;
    what it reports is recorded on the charger. Configuration follows the answer."""
    interval = settings.GATEWAY_HEARTBEAT_INTERVAL
    firmware = p.get("firmwareVersion") or ""
    cp.emit(
        "boot",
        {
            "vendor": p["chargePointVendor"],
            "model": p["chargePointModel"],
            "serial": p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber") or "",
            "firmware": firmware,
            "ocpp_version": "1.6",
            "heartbeat_interval": interval,
        },
    )
    cp.accept_boot(firmware)
    return {"currentTime": iso_now(), "interval": interval, "status": "Accepted"}


async def heartbeat(cp: ChargePoint16, p: dict[str, Any]) -> dict[str, Any]:
    """Proof of life: updates `last_seen`."""
    cp.emit("heartbeat")
    return {"currentTime": iso_now()}


async def status_notification(cp: ChargePoint16, p: dict[str, Any]) -> dict[str, Any]:
    """Outlet status; connector 0 is the charger itself (kept in the log only)."""
    connector_id = p["connectorId"]
    cp.emit(
        "status",
        {
            "evse_id": connector_id,
            "connector_id": connector_id,
            "status": p["status"],
            "error_code": p["errorCode"],
            "timestamp": p.get("timestamp"),
        },
    )
    return {}


async def authorize(cp: ChargePoint16, p: dict[str, Any]) -> dict[str, Any]:
    """Accepted when the card may charge on at least one outlet of the charger now (its card
    and the rules of use: `ocpp_gateway.access`); else Invalid / Blocked / Expired."""
    status = await answer_status(cp, p["idTag"], evse_id=None, action="Authorize")
    return {"idTagInfo": {"status": status}}


async def start_transaction(cp: ChargePoint16, p: dict[str, Any]) -> dict[str, Any]:
    """Allocates the transaction id — the same one for a retried start (same charger,
    connector, idTag, meterStart, timestamp) on any connection or gateway — and answers the
    card's status once the start is durable. Nothing is emitted before the id and the decision
    are known, so a failure there is a CALLERROR the charger retries, never a half-recorded
    start."""
    connector_id, id_tag = p["connectorId"], p["idTag"]
    transaction_id = relayed_transaction_id(cp) or await start_ids(cp.gateway).transaction_id(
        cp.id, (connector_id, id_tag, p["meterStart"], p["timestamp"])
    )
    offline = started_offline(p["timestamp"])
    decision = await answer(
        cp, id_tag, evse_id=connector_id, action="StartTransaction", offline=offline
    )
    event = {
        "event": "started",
        "transaction_id": str(transaction_id),
        "evse_id": connector_id,
        "connector_id": connector_id,
        "id_tag": id_tag,
        "timestamp": p["timestamp"],
        "meter_wh": p["meterStart"],
        "reason": "",
        "seq_no": None,
        # 1.6 has no offline flag: a start replayed long after its time was started offline,
        # and the session says so (as a 2.0.1 event with `offline` does).
        "offline": offline,
        "samples": [],
    }
    if decision.free:
        # A free-charging outlet: whatever idTag the charger sent (its FreeVendIdTag, any card)
        # the session is free.
        event["free"] = True
    cp.emit("transaction", event)
    await cp.sync()
    return {"transactionId": transaction_id, "idTagInfo": {"status": decision.status(cp.version)}}


async def meter_values(cp: ChargePoint16, p: dict[str, Any]) -> dict[str, Any]:
    """Live energy of a session (and other measurands, kept as samples); durable before
    answered."""
    transaction_id = p.get("transactionId")
    connector_id = p["connectorId"]
    cp.emit(
        "meter_values",
        {
            "transaction_id": str(transaction_id) if transaction_id is not None else None,
            "evse_id": connector_id,
            "connector_id": connector_id,
            "samples": samples_16(p["meterValue"]),
        },
    )
    await cp.sync()
    return {}


async def stop_transaction(cp: ChargePoint16, p: dict[str, Any]) -> dict[str, Any]:
    """Ends the session (a replayed stop changes nothing in the worker); transactionData
    samples are kept. Durable before answered; then the card's status from what is known: the
    decision (served from cache when the database is away) or, when even that fails, no
    idTagInfo (optional in StopTransaction.conf) — never a CALLERROR for a recorded stop."""
    id_tag = p.get("idTag")
    cp.emit(
        "transaction",
        {
            "event": "ended",
            "transaction_id": str(p["transactionId"]),
            "evse_id": None,
            "connector_id": None,
            "id_tag": id_tag,
            "timestamp": p["timestamp"],
            "meter_wh": p["meterStop"],
            "reason": p.get("reason") or "",
            "seq_no": None,
            "offline": False,
            "samples": samples_16(p.get("transactionData")),
        },
    )
    await cp.sync()
    if id_tag:
        try:
            decision = await cp.gateway.decisions.authorize(cp.community_id, id_tag)
        except Exception:
            logger.warning("%s: StopTransaction answered without idTagInfo", cp.id, exc_info=True)
            return {}
        return {"idTagInfo": {"status": decision["status"]}}
    return {}


async def data_transfer(cp: ChargePoint16, p: dict[str, Any]) -> dict[str, Any]:
    """No vendor extension is understood yet: the spec's answer is UnknownVendorId (the frame
    stays in the message log)."""
    return {"status": "UnknownVendorId"}


async def firmware_status_notification(cp: ChargePoint16, p: dict[str, Any]) -> dict[str, Any]:
    cp.emit("firmware_status", {"status": p["status"]})
    return {}


async def diagnostics_status_notification(cp: ChargePoint16, p: dict[str, Any]) -> dict[str, Any]:
    """Recorded in the message log only."""
    return {}


class ChargePoint16(GatewayChargePoint):
    version = "1.6"
    __slots__ = ()
    HANDLERS = {
        "BootNotification": boot_notification,
        "Heartbeat": heartbeat,
        "StatusNotification": status_notification,
        "Authorize": authorize,
        "StartTransaction": start_transaction,
        "MeterValues": meter_values,
        "StopTransaction": stop_transaction,
        "DataTransfer": data_transfer,
        "FirmwareStatusNotification": firmware_status_notification,
        "DiagnosticsStatusNotification": diagnostics_status_notification,
    }
    PORTAL_ACTIONS = frozenset(
        {
            "ChangeConfiguration",
            "GetConfiguration",
            "Reset",
            "RemoteStartTransaction",
            "RemoteStopTransaction",
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

    def applied_configuration(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action == "ChangeConfiguration" and payload.get("key"):
            return {payload["key"]: payload.get("value")}
        return {}

    # --- configuration ------------------------------------------------------------------------
    def profile(self) -> list[tuple[str, str]]:
        """The settings this charger should have: its vendor's, and the main meter's when it is
        a site's OCPP meter."""
        return profile_16(self.charger.get("vendor"), bool(self.charger.get("main_meter")))

    async def configure(self) -> None:
        """Full configuration (first connection, firmware change, "Reconfigure"): read the whole
        configuration, then set what differs from the vendor profile."""
        _, result = await self.command("GetConfiguration", request("1.6", "GetConfiguration"))
        current = {}
        if result is not None:
            for item in result.get("configurationKey") or ():
                current[item["key"]] = item.get("value")
            if current:
                self.emit("configuration", {"values": current})
        await self._apply(self.profile(), current, set())

    async def check_configuration(self) -> None:
        """At every other boot: read only the profile's keys and set those that differ (a
        factory reset or a replaced unit loses them without any firmware change). The read is
        kept in the message log, not as a command row; the smart-charging keys it reports
        (`READ_BACK_16`) are stored."""
        wanted = self.profile()
        status, result = await self.command(
            "GetConfiguration",
            request("1.6", "GetConfiguration", key=[key for key, _ in wanted] + list(READ_BACK_16)),
            record=False,
        )
        if result is None:
            return  # no usable answer: nothing to compare; the next boot tries again
        current = {item["key"]: item.get("value") for item in result.get("configurationKey") or ()}
        read_back = {k: current[k] for k in READ_BACK_16 if current.get(k) is not None}
        if read_back:
            self.emit("configuration", {"values": read_back})
        unknown = set(result.get("unknownKey") or ())
        if any(not same_value(current.get(k), v) for k, v in wanted if k not in unknown):
            logger.info("%s: configuration differs from its profile, re-applying", self.id)
            await self._apply(wanted, current, unknown)

    async def _apply(
        self, wanted: list[tuple[str, str]], current: dict[str, Any], unknown: set[str]
    ) -> None:
        applied = {}
        for key, value in wanted:
            if key in unknown or same_value(current.get(key), value):
                continue
            status, _ = await self.command(
                "ChangeConfiguration", request("1.6", "ChangeConfiguration", key=key, value=value)
            )
            for fallback in FALLBACKS_16.get(key, ()):
                if status != "rejected":
                    break
                # A charger or meter that cannot measure everything asked: the next, shorter
                # list (energy alone for billing; import power alone for a main meter).
                value = fallback
                status, _ = await self.command(
                    "ChangeConfiguration",
                    request("1.6", "ChangeConfiguration", key=key, value=value),
                )
            if status == "accepted":
                applied[key] = value
        if applied:
            self.emit("configuration", {"values": applied})
        self.emit("configured", {})
