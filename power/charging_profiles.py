"""The OCPP charging profiles power management sends, for 1.6 and 2.0.1.

Two layers per charger, so that a silent meter or a dead controller never leaves a charger
without a safe limit:
- the **failsafe**: a TxDefaultProfile on the whole charger (1.6 connectorId 0, 2.0.1 evseId 0)
  at stack level FAILSAFE_STACK_LEVEL, Relative, without expiry: what every transaction gets
  unless something more specific is in force. Sent in advance to every managed charger.
- the **dynamic limit**: a TxProfile for the session in progress, at a higher stack level, valid
  until `validTo` (POWER_PROFILE_VALIDITY_SECONDS, refreshed by the controller). A TxProfile
  overrules the TxDefaultProfile while it is valid; once it expires the charger falls back to
  the failsafe by itself.
and, apart from both, the charger's own **maximum** (`ChargerPower.max_a`, what its supply
cable and its breaker allow) as a ChargePointMaxProfile (1.6) / ChargingStationMaxProfile
(2.0.1) on connector / EVSE 0: a cap on the whole charger, all its outlets together, that no
other profile can exceed — not even one mistaken or left over from another system. It carries
the maximum only, never the site's share: a max profile caps every other profile, so a failsafe
sent that way could never be exceeded by a dynamic limit that is legitimately higher (one car
alone on the site). It is Absolute from the moment it is decided (2.0.1 K01.FR.38: a
ChargingStationMaxProfile may not be Relative) and has no expiry.

Limits are in A unless the charger says it only takes W
(`ChargingScheduleAllowedChargingRateUnit` in 1.6, `SmartChargingCtrlr/RateUnit` in 2.0.1, read
back at every boot): then W = A × nominal voltage × phases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

FAILSAFE_PROFILE_ID = 1
FAILSAFE_STACK_LEVEL = 0
MAX_PROFILE_ID = 2
# Stack level 0 is within every charger's ChargeProfileMaxStackLevel; the max profile is the only
# one of its purpose that power management stores.
MAX_STACK_LEVEL = 0
DYNAMIC_STACK_LEVEL = 1
# TxProfiles get an id per outlet (a 2.0.1 station keeps one profile per id).
DYNAMIC_PROFILE_ID_BASE = 100

SET = "SetChargingProfile"
CLEAR = "ClearChargingProfile"
ACTIONS = (SET, CLEAR)

# What the charger reported about its smart charging (Charger.configuration keys).
RATE_UNIT_KEYS = ("ChargingScheduleAllowedChargingRateUnit", "SmartChargingCtrlr/RateUnit")
STACK_LEVEL_KEYS = ("ChargeProfileMaxStackLevel", "SmartChargingCtrlr/ProfileStackLevel")


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def takes_watts_only(rate_unit: str | None) -> bool:
    """Whether the charger refuses schedules in A (it lists only Power / W)."""
    if not rate_unit:
        return False
    units = {u.strip().lower() for u in str(rate_unit).split(",")}
    return bool(units) and not units & {"current", "a"}


def dynamic_stack_level(max_stack_level: str | None) -> int:
    """The dynamic layer's stack level: above the failsafe when the charger has room for it
    (a TxProfile overrules a TxDefaultProfile anyway, so 0 still works)."""
    try:
        highest = int(str(max_stack_level))
    except (TypeError, ValueError):
        return DYNAMIC_STACK_LEVEL
    return max(0, min(DYNAMIC_STACK_LEVEL, highest))


def _period(limit_a: float, phases: int, voltage_v: float, watts: bool) -> tuple[str, float]:
    if watts:
        return "W", float(round(limit_a * voltage_v * phases))
    return "A", round(limit_a, 1)


def failsafe_profile(
    version: str, *, limit_a: float, phases: int, voltage_v: float = 230, watts: bool = False
) -> dict[str, Any]:
    """SetChargingProfile payload of the failsafe (TxDefaultProfile, whole charger, no expiry)."""
    unit, limit = _period(limit_a, phases, voltage_v, watts)
    period = {"startPeriod": 0, "limit": limit, "numberPhases": phases}
    if version == "1.6":
        return {
            "connectorId": 0,
            "csChargingProfiles": {
                "chargingProfileId": FAILSAFE_PROFILE_ID,
                "stackLevel": FAILSAFE_STACK_LEVEL,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {"chargingRateUnit": unit, "chargingSchedulePeriod": [period]},
            },
        }
    return {
        "evseId": 0,
        "chargingProfile": {
            "id": FAILSAFE_PROFILE_ID,
            "stackLevel": FAILSAFE_STACK_LEVEL,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": [
                {
                    "id": FAILSAFE_PROFILE_ID,
                    "chargingRateUnit": unit,
                    "chargingSchedulePeriod": [period],
                }
            ],
        },
    }


def max_profile(
    version: str,
    *,
    limit_a: float,
    phases: int,
    start: datetime,
    voltage_v: float = 230,
    watts: bool = False,
) -> dict[str, Any]:
    """SetChargingProfile payload of the charger's own maximum (ChargePointMaxProfile /
    ChargingStationMaxProfile on the whole charger, Absolute from `start`, no expiry)."""
    unit, limit = _period(limit_a, phases, voltage_v, watts)
    period = {"startPeriod": 0, "limit": limit, "numberPhases": phases}
    if version == "1.6":
        return {
            "connectorId": 0,
            "csChargingProfiles": {
                "chargingProfileId": MAX_PROFILE_ID,
                "stackLevel": MAX_STACK_LEVEL,
                "chargingProfilePurpose": "ChargePointMaxProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": {
                    "startSchedule": iso(start),
                    "chargingRateUnit": unit,
                    "chargingSchedulePeriod": [period],
                },
            },
        }
    return {
        "evseId": 0,
        "chargingProfile": {
            "id": MAX_PROFILE_ID,
            "stackLevel": MAX_STACK_LEVEL,
            "chargingProfilePurpose": "ChargingStationMaxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [
                {
                    "id": MAX_PROFILE_ID,
                    "startSchedule": iso(start),
                    "chargingRateUnit": unit,
                    "chargingSchedulePeriod": [period],
                }
            ],
        },
    }


def dynamic_profile(
    version: str,
    *,
    outlet: int,
    transaction_id: str,
    limit_a: float,
    phases: int,
    valid_to: datetime,
    voltage_v: float = 230,
    watts: bool = False,
    stack_level: int = DYNAMIC_STACK_LEVEL,
) -> dict[str, Any]:
    """SetChargingProfile payload of a session's limit (TxProfile valid until `valid_to`);
    0 A pauses the session. `outlet` is the 1.6 connectorId / 2.0.1 evseId."""
    unit, limit = _period(limit_a, phases, voltage_v, watts)
    period = {"startPeriod": 0, "limit": limit, "numberPhases": phases}
    profile_id = DYNAMIC_PROFILE_ID_BASE + outlet
    if version == "1.6":
        profile: dict[str, Any] = {
            "chargingProfileId": profile_id,
            "stackLevel": stack_level,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "validTo": iso(valid_to),
            "chargingSchedule": {"chargingRateUnit": unit, "chargingSchedulePeriod": [period]},
        }
        if transaction_id.isdigit():
            profile["transactionId"] = int(transaction_id)
        return {"connectorId": outlet, "csChargingProfiles": profile}
    return {
        "evseId": outlet,
        "chargingProfile": {
            "id": profile_id,
            "stackLevel": stack_level,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "validTo": iso(valid_to),
            "transactionId": transaction_id[:36],
            "chargingSchedule": [
                {
                    "id": profile_id,
                    "chargingRateUnit": unit,
                    "chargingSchedulePeriod": [period],
                }
            ],
        },
    }


def clear_profiles(version: str, max_stack_level: str | None = None) -> list[dict[str, Any]]:
    """ClearChargingProfile payloads removing what power management stored in a charger: the
    failsafe and the maximum (by their ids) and the dynamic TxProfiles (by purpose and the
    stack level they were sent at, from the charger's reported `max_stack_level`), when a site
    stops being managed. Profiles set by others (another stack level) are left alone."""
    level = dynamic_stack_level(max_stack_level)
    if version == "1.6":
        return [
            {"id": FAILSAFE_PROFILE_ID},
            {"id": MAX_PROFILE_ID},
            {"chargingProfilePurpose": "TxProfile", "stackLevel": level},
        ]
    return [
        {"chargingProfileId": FAILSAFE_PROFILE_ID},
        {"chargingProfileId": MAX_PROFILE_ID},
        {"chargingProfileCriteria": {"chargingProfilePurpose": "TxProfile", "stackLevel": level}},
    ]


def reported(configuration: dict[str, Any] | None, keys: tuple[str, ...]) -> str | None:
    """What the charger reported under the first of `keys` it has (`Charger.configuration`,
    read back at every boot): RATE_UNIT_KEYS, STACK_LEVEL_KEYS."""
    for key in keys:
        value = (configuration or {}).get(key)
        if value not in (None, ""):
            return str(value)
    return None


def profile_id(payload: dict[str, Any]) -> int | None:
    """The profile id of a SetChargingProfile payload (either version)."""
    profile = payload.get("csChargingProfiles") or payload.get("chargingProfile") or {}
    value = profile.get("chargingProfileId", profile.get("id"))
    return value if isinstance(value, int) else None


def profile_limit(payload: dict[str, Any]) -> float | None:
    """The first period's limit of a SetChargingProfile payload (either version)."""
    profile = payload.get("csChargingProfiles") or payload.get("chargingProfile") or {}
    schedule = profile.get("chargingSchedule")
    if isinstance(schedule, list):
        schedule = schedule[0] if schedule else {}
    periods = (schedule or {}).get("chargingSchedulePeriod") or []
    return float(periods[0]["limit"]) if periods else None
