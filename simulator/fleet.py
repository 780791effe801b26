"""Simulated chargers (OCPP 1.6J and 2.0.1), built on the `ocpp` library's client classes: for
the demo fleet (`manage.py simulate_chargers`) and for tests.

One session from a test, against a running gateway::

    result = asyncio.run(run_session(url, "CP-16", "1.6", card="04A23B11", energy_wh=7404))
    result = asyncio.run(run_session(url, "CP-201", "2.0.1", card="04A23B11"))
    # → {"transaction_id": …, "meter_start_wh": …, "meter_stop_wh": …, "energy_wh": …}

or step by step::

    async with connect_charger(url, "CP-16", "1.6", password="s3cret") as charger:
        await charger.boot()
        await charger.status(1, "Available")
        result = await charger.charge(card="04A23B11", energy_wh=5000, samples=3)

`run_session` returns once the charger has sent its stop and got the answer; the gateway's
events reach the database at its next flush (≤ GATEWAY_EVENT_FLUSH_SECONDS), so a test polls
the session (see tests/ocpp_gateway).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .operations import Operations16, Operations201

logger = logging.getLogger(__name__)

ENERGY = "Energy.Active.Import.Register"
VOLTAGE = 230.0


def _parse_time(value) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


MAX_PURPOSES = ("ChargePointMaxProfile", "ChargingStationMaxProfile")


def _schedule(profile: dict) -> dict:
    """A profile's (first) charging schedule: 1.6 has one, 2.0.1 a list."""
    schedule = profile["charging_schedule"]
    return schedule[0] if isinstance(schedule, list) else schedule


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Simulated:
    """What both versions share: a log of the calls the gateway made, a configuration store,
    the energy register and the tasks the simulator owns."""

    def _setup(self, register_wh: int | None = None):
        self.received: list[tuple[str, dict]] = []  # (action, snake_case payload) from gateway
        self.configuration: dict[str, str] = {}
        self.register_wh = (
            register_wh if register_wh is not None else random.randint(100_000, 900_000)
        )
        self._tasks: set[asyncio.Task] = set()
        # Sessions started remotely, by transaction id: resolved with the stop reason.
        self.remote_sessions: dict[str, asyncio.Future] = {}
        self._next_remote: dict | None = None  # a remote start accepted, begun after the answer
        self.remote_energy_wh = 3000
        # Smart charging: the profiles received (by id), the car plugged in (None: the charger
        # reports energy only) and how it behaves: it draws min(limit, car_max_a) on
        # car_phases phases — or car_max_a whatever it is told when `disobey` is set (tests);
        # `reject_profiles` refuses every profile, `reject_purposes` those of these purposes
        # (a charger without ChargePointMaxProfile support…).
        self.profiles: dict[int, dict] = {}
        self.car_max_a: float | None = None
        self.car_phases = 3
        self.disobey = False
        self.reject_profiles = False
        self.reject_purposes: set[str] = set()
        # A setting the charger cannot take (tests): refuse(key, value) → True to reject it.
        self.refuse_setting: Callable[[str, str], bool] | None = None

    def _store_profile(self, profile_id: int, profile: dict) -> str:
        if self.reject_profiles or profile["charging_profile_purpose"] in self.reject_purposes:
            return "Rejected"
        self.profiles[profile_id] = profile
        return "Accepted"

    def limit_a(self, transaction_id=None) -> float | None:
        """The limit in force (A): the valid TxProfile of the transaction with the highest stack
        level, else the valid TxDefaultProfile with the highest stack level, else None — capped
        by the charger's max profile (ChargePointMaxProfile / ChargingStationMaxProfile)."""
        now = datetime.now(UTC)
        valid = [
            p for p in self.profiles.values() if (_parse_time(p.get("valid_to")) or now) >= now
        ]
        ceilings = [
            self._schedule_limit(p)
            for p in valid
            if p["charging_profile_purpose"] in MAX_PURPOSES
            and (_parse_time(_schedule(p).get("start_schedule")) or now) <= now
        ]
        limit = self._layer_limit(valid, transaction_id)
        if ceilings:
            return min(ceilings) if limit is None else min(limit, *ceilings)
        return limit

    def _schedule_limit(self, profile: dict) -> float:
        schedule = _schedule(profile)
        limit = float(schedule["charging_schedule_period"][0]["limit"])
        if schedule["charging_rate_unit"] == "W":
            limit = limit / VOLTAGE / self.car_phases
        return limit

    def _layer_limit(self, valid: list[dict], transaction_id) -> float | None:
        tx = [
            p
            for p in valid
            if p["charging_profile_purpose"] == "TxProfile"
            and (
                transaction_id is None
                or p.get("transaction_id") is None
                or str(p.get("transaction_id")) == str(transaction_id)
            )
        ]
        defaults = [p for p in valid if p["charging_profile_purpose"] == "TxDefaultProfile"]
        for layer in (tx, defaults):
            if layer:
                return self._schedule_limit(max(layer, key=lambda p: p["stack_level"]))
        return None

    def draw_a(self, transaction_id=None) -> float | None:
        """What the car draws per phase now (None: no car model)."""
        if self.car_max_a is None:
            return None
        if self.disobey:
            return self.car_max_a
        limit = self.limit_a(transaction_id)
        return self.car_max_a if limit is None else min(limit, self.car_max_a)

    def _power_samples(self, transaction_id=None) -> list[dict]:
        """Current.Import per phase and Power.Active.Import, when a car is modelled."""
        draw = self.draw_a(transaction_id)
        if draw is None:
            return []
        values = [
            {"measurand": "Current.Import", "phase": f"L{n}", "value": round(draw, 1), "unit": "A"}
            for n in range(1, self.car_phases + 1)
        ]
        values.append(
            {
                "measurand": "Power.Active.Import",
                "value": round(draw * VOLTAGE * self.car_phases),
                "unit": "W",
            }
        )
        return values

    def _own(self, coro) -> None:
        """Run `coro` in a task the simulator keeps and awaits on close (no floating tasks)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _begin_remote(self, charge) -> None:
        """After-hook of a remote start: the answer has gone out, the session runs in an owned
        task (never in the hook: the reader must stay free for the gateway's answers)."""
        request, self._next_remote = self._next_remote, None
        if request is not None:
            self._own(charge(**request))

    def _stop_remote(self, transaction_id) -> bool:
        stop = self.remote_sessions.get(str(transaction_id))
        if stop is None or stop.done():
            return False
        stop.set_result("Remote")
        return True

    def _remote_started(self, transaction_id) -> asyncio.Future:
        stop = asyncio.get_running_loop().create_future()
        self.remote_sessions[str(transaction_id)] = stop
        return stop

    async def wait_owned(self) -> None:
        """Awaits the owned tasks; remote sessions still running end first (reason Local), as a
        charger ends them before hanging up."""
        for stop in self.remote_sessions.values():
            if not stop.done():
                stop.set_result("Local")
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def count(self, action: str) -> int:
        return sum(1 for a, _ in self.received if a == action)


class SimulatedCharger16(Operations16, _Simulated, ChargePoint16):
    """An OCPP 1.6J charge point."""

    version = "1.6"

    def __init__(self, identity, connection, register_wh=None, **kwargs):
        super().__init__(identity, connection, **kwargs)
        self._setup(register_wh)
        self.configuration.update(
            {
                "HeartbeatInterval": "3600",
                "MeterValueSampleInterval": "0",
                "MeterValuesSampledData": "",
                "StopTxnSampledData": "",
            }
        )

    @on(Action16.get_configuration)
    def on_get_configuration(self, **kwargs):
        self.received.append(("GetConfiguration", kwargs))
        keys = kwargs.get("key") or list(self.configuration)
        return result16.GetConfiguration(
            configuration_key=[
                {"key": k, "readonly": False, "value": self.configuration[k]}
                for k in keys
                if k in self.configuration
            ]
        )

    @on(Action16.change_configuration)
    def on_change_configuration(self, key, value, **kwargs):
        self.received.append(("ChangeConfiguration", {"key": key, "value": value}))
        if self.refuse_setting is not None and self.refuse_setting(key, value):
            return result16.ChangeConfiguration(status="Rejected")
        self.configuration[key] = value
        return result16.ChangeConfiguration(status="Accepted")

    @on(Action16.set_charging_profile)
    def on_set_charging_profile(self, connector_id, cs_charging_profiles, **kwargs):
        self.received.append(
            (
                "SetChargingProfile",
                {"connector_id": connector_id, "cs_charging_profiles": cs_charging_profiles},
            )
        )
        status = self._store_profile(
            cs_charging_profiles["charging_profile_id"], cs_charging_profiles
        )
        return result16.SetChargingProfile(status=status)

    @on(Action16.clear_charging_profile)
    def on_clear_charging_profile(self, id=None, **kwargs):
        self.received.append(("ClearChargingProfile", {"id": id, **kwargs}))
        found = self.profiles.pop(id, None) if id is not None else None
        return result16.ClearChargingProfile(status="Accepted" if found else "Unknown")

    @on(Action16.remote_start_transaction)
    def on_remote_start_transaction(self, id_tag, connector_id=None, **kwargs):
        """Accepted, then Preparing, StartTransaction for that idTag, meter values, and charging
        until RemoteStopTransaction (or hang-up)."""
        connector_id = connector_id or 1
        self.received.append(
            ("RemoteStartTransaction", {"id_tag": id_tag, "connector_id": connector_id})
        )
        if any(not stop.done() for stop in self.remote_sessions.values()):
            return result16.RemoteStartTransaction(status="Rejected")
        self._next_remote = {"card": id_tag, "connector_id": connector_id}
        return result16.RemoteStartTransaction(status="Accepted")

    @after(Action16.remote_start_transaction)
    def after_remote_start_transaction(self, **kwargs):
        self._begin_remote(self._remote_charge)

    @on(Action16.remote_stop_transaction)
    def on_remote_stop_transaction(self, transaction_id, **kwargs):
        self.received.append(("RemoteStopTransaction", {"transaction_id": transaction_id}))
        stopping = self.remote_sessions.get(str(transaction_id))
        ok = stopping is not None and not stopping.done()
        return result16.RemoteStopTransaction(status="Accepted" if ok else "Rejected")

    @after(Action16.remote_stop_transaction)
    def after_remote_stop_transaction(self, transaction_id, **kwargs):
        self._stop_remote(transaction_id)

    async def _remote_charge(self, card: str, connector_id: int, samples: int = 2) -> None:
        await self.status(connector_id, "Preparing")
        meter_start = self.register_wh
        started = await self.call(
            call16.StartTransaction(
                connector_id=connector_id, id_tag=card, meter_start=meter_start, timestamp=now_iso()
            )
        )
        tid = started.transaction_id
        stop = self._remote_started(tid)
        if started.id_tag_info["status"] != "Accepted":
            stop.set_result("DeAuthorized")
        else:
            await self.status(connector_id, "Charging")
            for i in range(samples):
                self.register_wh = meter_start + self.remote_energy_wh * (i + 1) // samples
                await self.call(
                    call16.MeterValues(
                        connector_id=connector_id, meter_value=self._sample(), transaction_id=tid
                    )
                )
        reason = await stop
        await self.call(
            call16.StopTransaction(
                meter_stop=self.register_wh,
                timestamp=now_iso(),
                transaction_id=tid,
                reason=reason,
                transaction_data=self._sample("Transaction.End"),
            )
        )
        await self.status(connector_id, "Finishing")
        await self.status(connector_id, "Available")

    async def boot(self, vendor="Sparklin", model="Sim-16", firmware="1.0.0"):
        return await self.call(
            call16.BootNotification(
                charge_point_vendor=vendor,
                charge_point_model=model,
                charge_point_serial_number=self.id,
                firmware_version=firmware,
            )
        )

    async def heartbeat(self):
        return await self.call(call16.Heartbeat())

    async def status(self, connector_id: int, status: str, error_code: str = "NoError"):
        return await self.call(
            call16.StatusNotification(
                connector_id=connector_id, error_code=error_code, status=status, timestamp=now_iso()
            )
        )

    async def authorize(self, card: str) -> str:
        result = await self.call(call16.Authorize(id_tag=card))
        return result.id_tag_info["status"]

    def _sample(self, context="Sample.Periodic", transaction_id=None):
        values = [
            {
                "value": str(self.register_wh),
                "context": context,
                "measurand": ENERGY,
                "unit": "Wh",
            }
        ]
        if context == "Sample.Periodic":
            values += [
                {**v, "value": str(v["value"]), "context": context}
                for v in self._power_samples(transaction_id)
            ]
        return [{"timestamp": now_iso(), "sampledValue": values}]

    async def charge(
        self,
        card: str,
        energy_wh: int = 7404,
        samples: int = 2,
        interval: float = 0.0,
        connector_id: int = 1,
    ) -> dict:
        """Plug in, authorize, start, meter values, stop, unplug. Returns the session facts."""
        await self.status(connector_id, "Preparing")
        await self.authorize(card)
        meter_start = self.register_wh
        started = await self.call(
            call16.StartTransaction(
                connector_id=connector_id, id_tag=card, meter_start=meter_start, timestamp=now_iso()
            )
        )
        tid = started.transaction_id
        await self.status(connector_id, "Charging")
        for i in range(samples):
            await asyncio.sleep(interval)
            self.register_wh = meter_start + energy_wh * (i + 1) // (samples + 1)
            await self.call(
                call16.MeterValues(
                    connector_id=connector_id,
                    meter_value=self._sample(transaction_id=tid),
                    transaction_id=tid,
                )
            )
        await asyncio.sleep(interval)
        self.register_wh = meter_start + energy_wh
        await self.call(
            call16.StopTransaction(
                meter_stop=self.register_wh,
                timestamp=now_iso(),
                transaction_id=tid,
                reason="Local",
                id_tag=card,
                transaction_data=self._sample("Transaction.End"),
            )
        )
        await self.status(connector_id, "Finishing")
        await self.status(connector_id, "Available")
        return {
            "transaction_id": str(tid),
            "id_tag": card,
            "meter_start_wh": meter_start,
            "meter_stop_wh": self.register_wh,
            "energy_wh": energy_wh,
            "authorization": started.id_tag_info["status"],
        }


class SimulatedCharger201(Operations201, _Simulated, ChargePoint201):
    """An OCPP 2.0.1 charging station with one EVSE and one connector."""

    version = "2.0.1"

    def __init__(self, identity, connection, register_wh=None, **kwargs):
        super().__init__(identity, connection, **kwargs)
        self._setup(register_wh)
        self.configuration.update(
            {
                "OCPPCommCtrlr/HeartbeatInterval": "3600",
                "SampledDataCtrlr/TxUpdatedMeasurands": "",
                "SampledDataCtrlr/TxUpdatedInterval": "0",
                "SampledDataCtrlr/TxEndedMeasurands": "",
            }
        )

    @on(Action201.get_base_report)
    def on_get_base_report(self, request_id, report_base, **kwargs):
        self.received.append(
            ("GetBaseReport", {"request_id": request_id, "report_base": report_base})
        )
        self._own(self._send_report(request_id))
        return result201.GetBaseReport(status="Accepted")

    async def _send_report(self, request_id):
        items = list(self.configuration.items())
        for seq_no, part in enumerate((items[:2], items[2:])):
            await self.call(
                call201.NotifyReport(
                    request_id=request_id,
                    generated_at=now_iso(),
                    seq_no=seq_no,
                    tbc=seq_no == 0,
                    report_data=[
                        {
                            "component": {"name": key.split("/")[0]},
                            "variable": {"name": key.split("/")[1]},
                            "variable_attribute": [{"type": "Actual", "value": value}],
                        }
                        for key, value in part
                    ],
                )
            )

    @on(Action201.get_variables)
    def on_get_variables(self, get_variable_data, **kwargs):
        self.received.append(("GetVariables", {"get_variable_data": get_variable_data}))
        results = []
        for item in get_variable_data:
            key = f"{item['component']['name']}/{item['variable']['name']}"
            known = key in self.configuration
            results.append(
                {
                    "attribute_status": "Accepted" if known else "UnknownVariable",
                    "attribute_value": self.configuration.get(key),
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        return result201.GetVariables(get_variable_result=results)

    @on(Action201.set_variables)
    def on_set_variables(self, set_variable_data, **kwargs):
        self.received.append(("SetVariables", {"set_variable_data": set_variable_data}))
        results = []
        for item in set_variable_data:
            key = f"{item['component']['name']}/{item['variable']['name']}"
            self.configuration[key] = item["attribute_value"]
            results.append(
                {
                    "attribute_status": "Accepted",
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        return result201.SetVariables(set_variable_result=results)

    @on(Action201.set_charging_profile)
    def on_set_charging_profile(self, evse_id, charging_profile, **kwargs):
        self.received.append(
            ("SetChargingProfile", {"evse_id": evse_id, "charging_profile": charging_profile})
        )
        status = self._store_profile(charging_profile["id"], charging_profile)
        return result201.SetChargingProfile(status=status)

    @on(Action201.clear_charging_profile)
    def on_clear_charging_profile(self, charging_profile_id=None, **kwargs):
        self.received.append(("ClearChargingProfile", {"charging_profile_id": charging_profile_id}))
        found = self.profiles.pop(charging_profile_id, None) if charging_profile_id else None
        return result201.ClearChargingProfile(status="Accepted" if found else "Unknown")

    @on(Action201.request_start_transaction)
    def on_request_start_transaction(self, id_token, remote_start_id, evse_id=None, **kwargs):
        """Accepted, then TransactionEvent Started (RemoteStart, with the remoteStartId), Updated
        with meter values, and Ended on RequestStopTransaction (or hang-up)."""
        evse_id = evse_id or 1
        self.received.append(
            (
                "RequestStartTransaction",
                {"id_token": id_token, "remote_start_id": remote_start_id, "evse_id": evse_id},
            )
        )
        if any(not stop.done() for stop in self.remote_sessions.values()):
            return result201.RequestStartTransaction(status="Rejected")
        self._next_remote = {
            "id_token": id_token,
            "remote_start_id": remote_start_id,
            "evse_id": evse_id,
        }
        return result201.RequestStartTransaction(status="Accepted")

    @after(Action201.request_start_transaction)
    def after_request_start_transaction(self, **kwargs):
        self._begin_remote(self._remote_charge)

    @on(Action201.request_stop_transaction)
    def on_request_stop_transaction(self, transaction_id, **kwargs):
        self.received.append(("RequestStopTransaction", {"transaction_id": transaction_id}))
        stopping = self.remote_sessions.get(str(transaction_id))
        ok = stopping is not None and not stopping.done()
        return result201.RequestStopTransaction(status="Accepted" if ok else "Rejected")

    @after(Action201.request_stop_transaction)
    def after_request_stop_transaction(self, transaction_id, **kwargs):
        self._stop_remote(transaction_id)

    async def _remote_charge(
        self, id_token: dict, remote_start_id: int, evse_id: int, samples: int = 2
    ) -> None:
        tid = str(uuid.uuid4())
        stop = self._remote_started(tid)
        evse = {"id": evse_id, "connector_id": 1}
        await self.status(1, "Occupied", evse_id=evse_id)
        meter_start = self.register_wh
        started = await self.call(
            call201.TransactionEvent(
                event_type="Started",
                timestamp=now_iso(),
                trigger_reason="RemoteStart",
                seq_no=0,
                transaction_info={
                    "transaction_id": tid,
                    "charging_state": "Charging",
                    "remote_start_id": remote_start_id,
                },
                evse=evse,
                id_token=id_token,
                meter_value=self._meter("Transaction.Begin"),
            )
        )
        seq = 0
        if (started.id_token_info or {}).get("status") != "Accepted":
            stop.set_result("DeAuthorized")
        else:
            for i in range(samples):
                seq += 1
                self.register_wh = meter_start + self.remote_energy_wh * (i + 1) // samples
                await self.call(
                    call201.TransactionEvent(
                        event_type="Updated",
                        timestamp=now_iso(),
                        trigger_reason="MeterValuePeriodic",
                        seq_no=seq,
                        transaction_info={"transaction_id": tid},
                        meter_value=self._meter("Sample.Periodic"),
                    )
                )
        reason = await stop
        await self.call(
            call201.TransactionEvent(
                event_type="Ended",
                timestamp=now_iso(),
                trigger_reason="RemoteStop" if reason == "Remote" else "StopAuthorized",
                seq_no=seq + 1,
                transaction_info={"transaction_id": tid, "stopped_reason": reason},
                meter_value=self._meter("Transaction.End"),
            )
        )
        await self.status(1, "Available", evse_id=evse_id)

    async def boot(self, vendor="Sparklin", model="Sim-201", firmware="1.0.0"):
        return await self.call(
            call201.BootNotification(
                charging_station={
                    "model": model,
                    "vendor_name": vendor,
                    "serial_number": self.id,
                    "firmware_version": firmware,
                },
                reason="PowerUp",
            )
        )

    async def heartbeat(self):
        return await self.call(call201.Heartbeat())

    async def status(self, connector_id: int, status: str, evse_id: int = 1):
        status = {"Preparing": "Occupied", "Charging": "Occupied", "Finishing": "Occupied"}.get(
            status, status
        )
        return await self.call(
            call201.StatusNotification(
                timestamp=now_iso(),
                connector_status=status,
                evse_id=evse_id,
                connector_id=connector_id,
            )
        )

    async def authorize(self, card: str, token_type: str = "ISO14443") -> str:
        result = await self.call(call201.Authorize(id_token={"id_token": card, "type": token_type}))
        return result.id_token_info["status"]

    def _meter(self, context, transaction_id=None):
        values = [
            {
                "value": self.register_wh / 1000,
                "context": context,
                "measurand": ENERGY,
                "unit_of_measure": {"unit": "kWh"},
            }
        ]
        if context == "Sample.Periodic":
            for v in self._power_samples(transaction_id):
                value = {
                    "value": v["value"],
                    "context": context,
                    "measurand": v["measurand"],
                    "unit_of_measure": {"unit": v["unit"]},
                }
                if "phase" in v:
                    value["phase"] = v["phase"]
                values.append(value)
        return [{"timestamp": now_iso(), "sampled_value": values}]

    async def charge(
        self,
        card: str,
        energy_wh: int = 7404,
        samples: int = 2,
        interval: float = 0.0,
        connector_id: int = 1,
        token_type: str = "ISO14443",
    ) -> dict:
        """Occupied, authorize, TransactionEvent Started / Updated… / Ended, Available. Energy
        is reported in kWh (to exercise unit handling)."""
        tid = str(uuid.uuid4())
        evse = {"id": 1, "connector_id": connector_id}
        token = {"id_token": card, "type": token_type}
        await self.status(connector_id, "Occupied")
        await self.authorize(card, token_type)
        meter_start = self.register_wh
        seq = 0
        started = await self.call(
            call201.TransactionEvent(
                event_type="Started",
                timestamp=now_iso(),
                trigger_reason="Authorized",
                seq_no=seq,
                transaction_info={"transaction_id": tid, "charging_state": "Charging"},
                evse=evse,
                id_token=token,
                meter_value=self._meter("Transaction.Begin"),
            )
        )
        for i in range(samples):
            await asyncio.sleep(interval)
            seq += 1
            self.register_wh = meter_start + energy_wh * (i + 1) // (samples + 1)
            await self.call(
                call201.TransactionEvent(
                    event_type="Updated",
                    timestamp=now_iso(),
                    trigger_reason="MeterValuePeriodic",
                    seq_no=seq,
                    transaction_info={"transaction_id": tid},
                    meter_value=self._meter("Sample.Periodic", transaction_id=tid),
                )
            )
        await asyncio.sleep(interval)
        seq += 1
        self.register_wh = meter_start + energy_wh
        await self.call(
            call201.TransactionEvent(
                event_type="Ended",
                timestamp=now_iso(),
                trigger_reason="StopAuthorized",
                seq_no=seq,
                transaction_info={"transaction_id": tid, "stopped_reason": "Local"},
                id_token=token,
                meter_value=self._meter("Transaction.End"),
            )
        )
        await self.status(connector_id, "Available")
        return {
            "transaction_id": tid,
            "id_tag": card,
            "meter_start_wh": meter_start,
            "meter_stop_wh": self.register_wh,
            "energy_wh": energy_wh,
            "authorization": (started.id_token_info or {}).get("status"),
        }


def basic_auth(identity: str, password: str) -> str:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return f"Basic {token}"


@contextlib.asynccontextmanager
async def connect_charger(
    url: str,
    identity: str,
    version: str = "1.6",
    *,
    password: str | None = None,
    register_wh: int | None = None,
    response_timeout: float = 10,
    open_timeout: float = 5,
    configuration: dict[str, str] | None = None,
):
    """Connect a simulated charger and run its reader; yields the charger object. On exit the
    connection is closed and the reader and owned tasks are awaited. `configuration` overrides
    the charger's factory settings (e.g. a charger Sparklin already configured)."""
    cls = SimulatedCharger201 if version.startswith("2") else SimulatedCharger16
    headers = {"Authorization": basic_auth(identity, password)} if password else None
    async with connect(
        url.rstrip("/") + "/" + identity,
        subprotocols=[f"ocpp{cls.version}"],
        additional_headers=headers,
        compression=None,
        open_timeout=open_timeout,
    ) as ws:
        charger = cls(identity, ws, register_wh=register_wh, response_timeout=response_timeout)
        charger.configuration.update(configuration or {})
        reader = asyncio.create_task(charger.start())
        try:
            yield charger
        finally:
            await charger.wait_owned()
            await ws.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader


async def run_session(
    url: str,
    identity: str,
    version: str = "1.6",
    *,
    card: str,
    energy_wh: int = 7404,
    samples: int = 2,
    interval: float = 0.0,
    password: str | None = None,
    timeout: float = 20,
) -> dict:
    """Connect, boot, report the outlet Available, run one whole charging session, and hang
    up. Bounded by `timeout` seconds."""

    async def scenario():
        async with connect_charger(url, identity, version, password=password) as charger:
            await charger.boot()
            await charger.status(1, "Available")
            return await charger.charge(
                card=card, energy_wh=energy_wh, samples=samples, interval=interval
            )

    return await asyncio.wait_for(scenario(), timeout)


async def run_fleet(
    url: str,
    chargers: list[tuple[str, str]],
    *,
    card: str,
    cycles: int | None = None,
    idle: tuple[float, float] = (20, 60),
    sample_interval: float = 10,
    samples: int = 6,
    password: str | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Keep simulated chargers alive for the demo: connect (retrying with backoff while the
    gateway is not up), boot, report Available, heartbeat, and every so often charge. Each
    charger stops after `cycles` sessions when given, or when `stop` is set."""
    stop = stop or asyncio.Event()
    async with asyncio.TaskGroup() as group:
        for identity, version in chargers:
            group.create_task(
                _keep_alive(
                    url,
                    identity,
                    version,
                    card,
                    cycles,
                    idle,
                    sample_interval,
                    samples,
                    password,
                    stop,
                )
            )


async def _keep_alive(
    url, identity, version, card, cycles, idle, sample_interval, samples, password, stop
) -> None:
    done = 0
    backoff = 1.0
    register = random.randint(100_000, 900_000)
    while not stop.is_set() and (cycles is None or done < cycles):
        try:
            async with connect_charger(
                url, identity, version, password=password, register_wh=register, response_timeout=30
            ) as charger:
                backoff = 1.0
                # A car that takes up to 16 or 32 A on three phases, and obeys the profiles it
                # gets: the demo's Power page shows balancing on what the chargers report.
                charger.car_max_a = random.choice((16.0, 32.0))
                boot = await charger.boot()
                interval = max(int(getattr(boot, "interval", 60) or 60), 5)
                await charger.status(1, "Available")
                logger.info("%s (%s) connected", identity, version)
                while not stop.is_set() and (cycles is None or done < cycles):
                    pause = random.uniform(*idle)
                    waited = 0.0
                    while waited < pause and not stop.is_set():
                        step = min(interval, pause - waited)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), step)
                        waited += step
                        if waited < pause:
                            await charger.heartbeat()
                    if stop.is_set():
                        break
                    if any(not ended.done() for ended in charger.remote_sessions.values()):
                        continue  # a driver is charging from the portal on this outlet
                    result = await charger.charge(
                        card=card,
                        energy_wh=random.randint(3_000, 15_000),
                        samples=samples,
                        interval=sample_interval,
                    )
                    done += 1
                    logger.info(
                        "%s: session %s, %s Wh",
                        identity,
                        result["transaction_id"],
                        result["energy_wh"],
                    )
                register = charger.register_wh
        except (OSError, ConnectionClosed, TimeoutError) as e:
            logger.info("%s: gateway not reachable (%s), retrying in %.0fs", identity, e, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 30.0)
        except Exception as e:  # an InvalidStatus (404/401) or a protocol error: retry slowly
            logger.warning("%s: %s, retrying in 30s", identity, e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 30)
