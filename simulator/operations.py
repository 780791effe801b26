"""What a simulated charger answers to the portal's fleet operations (`chargers.operations`):
Reset, UnlockConnector, ChangeAvailability and TriggerMessage, in OCPP 1.6 and 2.0.1, with the
reports a real charger sends afterwards (a new boot after a reset, the outlet's status after a
change of availability, the status or meter values a trigger asked for); and the local
authorization list `rules.locallists` keeps on each charger (SendLocalList, Full or
Differential, and GetLocalListVersion). Mixed into the simulated chargers of `simulator.fleet`;
`refuse` makes one action answer Rejected (tests)."""

from __future__ import annotations

from ocpp.routing import after, on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201


class _Operations:
    def _operations_setup(self) -> None:
        if not hasattr(self, "unavailable"):
            self.unavailable: set[int] = set()  # connector ids taken out of service
            self.refuse: set[str] = set()  # actions to answer Rejected
            # The local authorization list: version (0: none yet) and id → its info.
            self.local_list_version = 0
            self.local_list: dict[str, dict] = {}

    def _store_list(self, version: int, update: str, entries: dict[str, dict | None]) -> str:
        """Apply a SendLocalList as a charger does: a Full list replaces what is held, a
        Differential one adds or updates the entries with info and removes those without, and
        only on a newer version (else VersionMismatch)."""
        self._operations_setup()
        if "SendLocalList" in self.refuse:
            return "Failed"
        if update == "Differential":
            if version <= self.local_list_version:
                return "VersionMismatch"
            held = dict(self.local_list)
        else:
            held = {}
        for uid, info in entries.items():
            if info is None:
                held.pop(uid, None)
            else:
                held[uid] = info
        self.local_list, self.local_list_version = held, version
        return "Accepted"

    def _answer(self, action: str, ok: str, kwargs: dict) -> str:
        self._operations_setup()
        self.received.append((action, kwargs))
        return "Rejected" if action in self.refuse else ok

    def _outlet_status(self, connector_id: int) -> str:
        self._operations_setup()
        return "Unavailable" if connector_id in self.unavailable else "Available"


class Operations16(_Operations):
    @on(Action16.reset)
    def on_reset(self, type, **kwargs):
        return result16.Reset(status=self._answer("Reset", "Accepted", {"type": type}))

    @after(Action16.reset)
    def after_reset(self, type, **kwargs):
        if "Reset" not in self.refuse:
            self._own(self._rebooted())

    async def _rebooted(self):
        await self.boot()
        await self.status(1, self._outlet_status(1))

    @on(Action16.unlock_connector)
    def on_unlock_connector(self, connector_id, **kwargs):
        status = self._answer("UnlockConnector", "Unlocked", {"connector_id": connector_id})
        return result16.UnlockConnector(status="UnlockFailed" if status == "Rejected" else status)

    @on(Action16.change_availability)
    def on_change_availability(self, connector_id, type, **kwargs):
        args = {"connector_id": connector_id, "type": type}
        return result16.ChangeAvailability(
            status=self._answer("ChangeAvailability", "Accepted", args)
        )

    @after(Action16.change_availability)
    def after_change_availability(self, connector_id, type, **kwargs):
        if "ChangeAvailability" in self.refuse:
            return
        (self.unavailable.add if type == "Inoperative" else self.unavailable.discard)(connector_id)
        self._own(self.status(connector_id, self._outlet_status(connector_id)))

    @on(Action16.get_local_list_version)
    def on_get_local_list_version(self, **kwargs):
        self._answer("GetLocalListVersion", "Accepted", {})
        return result16.GetLocalListVersion(list_version=self.local_list_version)

    @on(Action16.send_local_list)
    def on_send_local_list(self, list_version, update_type, local_authorization_list=(), **kw):
        self._answer("SendLocalList", "Accepted", {"list_version": list_version})
        entries = {e["id_tag"]: e.get("id_tag_info") for e in local_authorization_list}
        return result16.SendLocalList(status=self._store_list(list_version, update_type, entries))

    @on(Action16.trigger_message)
    def on_trigger_message(self, requested_message, connector_id=None, **kwargs):
        args = {"requested_message": requested_message, "connector_id": connector_id}
        supported = requested_message in ("StatusNotification", "MeterValues")
        status = self._answer("TriggerMessage", "Accepted" if supported else "NotImplemented", args)
        return result16.TriggerMessage(status=status)

    @after(Action16.trigger_message)
    def after_trigger_message(self, requested_message, connector_id=None, **kwargs):
        if "TriggerMessage" not in self.refuse:
            self._own(self._triggered(requested_message, connector_id or 1))

    async def _triggered(self, requested_message, connector_id):
        if requested_message == "StatusNotification":
            await self.status(connector_id, self._outlet_status(connector_id))
        elif requested_message == "MeterValues":
            await self.call(
                call16.MeterValues(
                    connector_id=connector_id,
                    meter_value=self._sample("Trigger"),
                )
            )


class Operations201(_Operations):
    @on(Action201.reset)
    def on_reset(self, type, **kwargs):
        return result201.Reset(status=self._answer("Reset", "Accepted", {"type": type, **kwargs}))

    @after(Action201.reset)
    def after_reset(self, type, **kwargs):
        if "Reset" not in self.refuse:
            self._own(self._rebooted())

    async def _rebooted(self):
        await self.boot()
        await self.status(1, self._outlet_status(1))

    @on(Action201.unlock_connector)
    def on_unlock_connector(self, evse_id, connector_id, **kwargs):
        args = {"evse_id": evse_id, "connector_id": connector_id}
        status = self._answer("UnlockConnector", "Unlocked", args)
        return result201.UnlockConnector(status="UnlockFailed" if status == "Rejected" else status)

    @on(Action201.change_availability)
    def on_change_availability(self, operational_status, evse=None, **kwargs):
        args = {"operational_status": operational_status, "evse": evse}
        status = self._answer("ChangeAvailability", "Accepted", args)
        return result201.ChangeAvailability(status=status)

    @after(Action201.change_availability)
    def after_change_availability(self, operational_status, evse=None, **kwargs):
        if "ChangeAvailability" in self.refuse:
            return
        connector_id = (evse or {}).get("connector_id", 1)
        if operational_status == "Inoperative":
            self.unavailable.add(connector_id)
        else:
            self.unavailable.discard(connector_id)
        self._own(self.status(connector_id, self._outlet_status(connector_id)))

    @on(Action201.get_local_list_version)
    def on_get_local_list_version(self, **kwargs):
        self._answer("GetLocalListVersion", "Accepted", {})
        return result201.GetLocalListVersion(version_number=self.local_list_version)

    @on(Action201.send_local_list)
    def on_send_local_list(self, version_number, update_type, local_authorization_list=(), **kw):
        self._answer("SendLocalList", "Accepted", {"version_number": version_number})
        entries = {
            e["id_token"]["id_token"]: e.get("id_token_info") for e in local_authorization_list
        }
        return result201.SendLocalList(
            status=self._store_list(version_number, update_type, entries)
        )

    @on(Action201.trigger_message)
    def on_trigger_message(self, requested_message, evse=None, **kwargs):
        args = {"requested_message": requested_message, "evse": evse}
        supported = requested_message in ("StatusNotification", "MeterValues")
        status = self._answer("TriggerMessage", "Accepted" if supported else "NotImplemented", args)
        return result201.TriggerMessage(status=status)

    @after(Action201.trigger_message)
    def after_trigger_message(self, requested_message, evse=None, **kwargs):
        if "TriggerMessage" not in self.refuse:
            evse = evse or {}
            self._own(
                self._triggered(requested_message, evse.get("id", 1), evse.get("connector_id", 1))
            )

    async def _triggered(self, requested_message, evse_id, connector_id):
        if requested_message == "StatusNotification":
            await self.status(connector_id, self._outlet_status(connector_id), evse_id=evse_id)
        elif requested_message == "MeterValues":
            await self.call(
                call201.MeterValues(evse_id=evse_id, meter_value=self._meter("Trigger"))
            )
