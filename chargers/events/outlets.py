"""Outlets and their status: StatusNotification (1.6) / StatusNotification (2.0.1)."""

from __future__ import annotations

from datetime import datetime

from ..contract import StatusPayload
from .batch import ChargerState
from .values import check_outlet, clean_text


def validate_status(p: StatusPayload) -> None:
    check_outlet(p.get("evse_id"), p.get("connector_id"))


def apply_status(st: ChargerState, p: StatusPayload, at: datetime) -> None:
    """Connector status. Ordered by the time the gateway received it, not the charger's clock:
    chargers often report 1970 or a stale time after a reboot, and an ordering on their clock
    would freeze the outlet. An older status than the stored one is ignored. The charger itself
    (1.6 connector 0, 2.0.1 EVSE 0) is not an outlet."""
    connector = st.connector(p.get("evse_id"), p.get("connector_id"))
    if connector is None:
        return
    if connector.status_at is not None and at < connector.status_at:
        return
    connector.status = clean_text(p.get("status"), 20)
    connector.error_code = clean_text(p.get("error_code"), 50)
    connector.status_at = at
    st.connector_changed(connector)
