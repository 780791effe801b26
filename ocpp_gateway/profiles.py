"""Vendor profiles: the settings the gateway applies at a charger's first connection (and on
"Reconfigure"), per vendor and OCPP version. Every profile starts from what the product needs
(heartbeat, energy register in transactions); vendors add what makes their chargers behave.

At every other boot the gateway reads just these settings back and re-applies those that differ
(`same_value`), so a factory-reset or replaced charger is reconfigured.

1.6 entries are (key, value) for ChangeConfiguration; 2.0.1 entries are (component, variable,
value) for SetVariables. Values are read from settings at call time (tests change them)."""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

from django.conf import settings

ENERGY = "Energy.Active.Import.Register"
# What the product needs reported (chargers that send nothing until told): energy for billing,
# power and current for power management (its obedience check compares them with the limits).
METER_VALUES_SAMPLED_DATA = "Energy.Active.Import.Register,Power.Active.Import,Current.Import"
STOP_TXN_SAMPLED_DATA = "Energy.Active.Import.Register"
T = TypeVar("T", tuple[str, str], tuple[str, str, str])
# Read back at every boot, never set: what the charger accepts as charging profiles (power
# management sends W to a charger that takes no A, and stacks within its levels).
READ_BACK_16 = ("ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit")
READ_BACK_201 = (("SmartChargingCtrlr", "ProfileStackLevel"), ("SmartChargingCtrlr", "RateUnit"))
# A charger (or a standalone OCPP meter) that is a site's OCPP meter (`meters.Meter`, kind ocpp)
# reports the main meter as connector 0 / EVSE 0 clock-aligned MeterValues: power both ways and
# current (OCPP 1.6 §3.16.3: a measurand the charger measures on several phases is reported
# per phase, so "Current.Import" gives L1, L2, L3), and the registers. Every
# GATEWAY_MAIN_METER_INTERVAL seconds, far below METER_SILENT_SECONDS, so the controller sees a
# building load move within seconds. Clock-aligned data goes out whether or not a session runs.
MAIN_METER_MEASURANDS = (
    "Power.Active.Import,Power.Active.Export,Current.Import,"
    "Energy.Active.Import.Register,Energy.Active.Export.Register"
)
# What a meter refusing the full list (no export measurement) is asked for instead.
MAIN_METER_MEASURANDS_IMPORT = "Power.Active.Import,Current.Import,Energy.Active.Import.Register"
# A 1.6 key's values tried in turn when the charger rejects the first (ChangeConfiguration).
FALLBACKS_16 = {
    # Some meters cannot report power: energy alone is what billing needs.
    "MeterValuesSampledData": (ENERGY,),
    "MeterValuesAlignedData": (MAIN_METER_MEASURANDS_IMPORT, "Power.Active.Import"),
}


def base_16() -> list[tuple[str, str]]:
    return [
        ("HeartbeatInterval", str(settings.GATEWAY_HEARTBEAT_INTERVAL)),
        ("MeterValueSampleInterval", str(settings.GATEWAY_METER_SAMPLE_INTERVAL)),
        ("MeterValuesSampledData", METER_VALUES_SAMPLED_DATA),
        ("StopTxnSampledData", STOP_TXN_SAMPLED_DATA),
    ]


def base_201() -> list[tuple[str, str, str]]:
    return [
        ("OCPPCommCtrlr", "HeartbeatInterval", str(settings.GATEWAY_HEARTBEAT_INTERVAL)),
        ("SampledDataCtrlr", "TxUpdatedMeasurands", METER_VALUES_SAMPLED_DATA),
        ("SampledDataCtrlr", "TxUpdatedInterval", str(settings.GATEWAY_METER_SAMPLE_INTERVAL)),
        ("SampledDataCtrlr", "TxEndedMeasurands", STOP_TXN_SAMPLED_DATA),
    ]


def main_meter_16() -> list[tuple[str, str]]:
    return [
        ("ClockAlignedDataInterval", str(settings.GATEWAY_MAIN_METER_INTERVAL)),
        ("MeterValuesAlignedData", MAIN_METER_MEASURANDS),
    ]


def main_meter_201() -> list[tuple[str, str, str]]:
    return [
        ("AlignedDataCtrlr", "Enabled", "true"),
        ("AlignedDataCtrlr", "Interval", str(settings.GATEWAY_MAIN_METER_INTERVAL)),
        ("AlignedDataCtrlr", "Measurands", MAIN_METER_MEASURANDS),
        # true would mean "only while no transaction runs": the site's load matters most then.
        ("AlignedDataCtrlr", "SendDuringIdle", "false"),
    ]


def _override(wanted: list[T], extra: list[T], width: int) -> list[T]:
    """`wanted` with the entries of `extra` replacing those of the same key (the first `width`
    items), `extra`'s new keys appended."""
    keys = {item[:width] for item in extra}
    return [item for item in wanted if item[:width] not in keys] + extra


def profile_16(vendor: str | None, main_meter: bool = False) -> list[tuple[str, str]]:
    """ChangeConfiguration (key, value) pairs for a 1.6 charger of `vendor`; `main_meter` when
    it is a site's OCPP meter (connector-0 clock-aligned data, overriding the vendor's)."""
    wanted = _vendor_16(vendor)
    return _override(wanted, main_meter_16(), 1) if main_meter else wanted


def _vendor_16(vendor: str | None) -> list[tuple[str, str]]:
    wanted = base_16()
    if vendor == "spark1":
        # Our own charger: a quarter-hour register reading even without a session (grid
        # reports), and it stops a session when the cable is pulled.
        wanted += [
            ("ClockAlignedDataInterval", "900"),
            ("MeterValuesAlignedData", ENERGY),
            ("StopTransactionOnEVSideDisconnect", "true"),
        ]
    elif vendor == "zaptec":
        wanted += [("StopTransactionOnEVSideDisconnect", "true")]
    elif vendor == "volttime":
        wanted += [("ClockAlignedDataInterval", "900"), ("MeterValuesAlignedData", ENERGY)]
    return wanted


def profile_201(vendor: str | None, main_meter: bool = False) -> list[tuple[str, str, str]]:
    """SetVariables (component, variable, value) triples for a 2.0.1 station of `vendor`;
    `main_meter` when it is a site's OCPP meter (EVSE-0 aligned data, overriding the vendor's)."""
    wanted = _vendor_201(vendor)
    return _override(wanted, main_meter_201(), 2) if main_meter else wanted


def _vendor_201(vendor: str | None) -> list[tuple[str, str, str]]:
    wanted = base_201()
    if vendor in ("volttime", "spark1"):
        wanted += [
            ("AlignedDataCtrlr", "Interval", "900"),
            ("AlignedDataCtrlr", "Measurands", ENERGY),
        ]
    if vendor == "volttime":
        wanted += [("TxCtrlr", "StopTxOnEVSideDisconnect", "true")]
    return wanted


def same_value(current: object, wanted: str) -> bool:
    """Whether a value the charger reports equals the profile's: lists compared item by item,
    numbers by value ("60" == "60.0"), anything else as stripped text."""
    if current is None:
        return False
    if "," in wanted or "," in str(current):
        return [v.strip() for v in str(current).split(",")] == wanted.split(",")
    try:
        return Decimal(str(current)) == Decimal(wanted)
    except ArithmeticError:
        return str(current).strip().lower() == wanted.lower()  # "True" == "true"
