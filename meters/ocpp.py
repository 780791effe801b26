"""OCPP main meters: a charger, or a standalone OCPP meter registered as one, reports the site's
meter as connector 0 (1.6) / EVSE 0 (2.0.1) MeterValues. The worker hands those samples to
`record_main_meter` (registered at start-up, see MetersConfig.ready), which turns them into
readings of the meters configured with `kind=ocpp` for that charger (same community only).

Samples map as: Power.Active.Import/Export per phase (L1, L1-N …) or without phase (total),
net = import − export; Current.Import per phase; Energy.Active.Import/Export.Register without
phase. A sample without location is at the Outlet (the OCPP default); a meter configured with a
location takes only that location's samples."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError

from chargers.events import parse_time, sample_value
from chargers.events.main_meter import MainMeterSamples

from .config import OcppConfig
from .models import Meter
from .readings import NewReading, record_readings

logger = logging.getLogger("meters.ocpp")

PHASES = {"L1": 0, "L1-N": 0, "L2": 1, "L2-N": 1, "L3": 2, "L3-N": 2}


def _phase(sample: dict[str, Any]) -> int | None:
    """0, 1, 2 for a phase; -1 for the total; None for what is not a phase figure (L1-L2 …)."""
    phase = str(sample.get("phase") or "")
    if not phase:
        return -1
    return PHASES.get(phase)


def to_readings(
    samples: Iterable[dict[str, Any]], config: OcppConfig, meter_id: int, received_at: datetime
) -> list[NewReading]:
    """One reading per sample time carrying power; the rest (voltage, SoC …) is ignored."""
    groups: dict[datetime, dict[str, Any]] = defaultdict(dict)
    for s in samples:
        location = str(s.get("location") or "Outlet")
        if config.location and location != config.location:
            continue
        value = sample_value(s)
        phase = _phase(s)
        if value is None or phase is None:
            continue
        at = parse_time(s.get("timestamp"), received_at) or received_at
        figures = groups[at]
        measurand = str(s.get("measurand") or "")
        if measurand in ("Power.Active.Import", "Power.Active.Export"):
            direction = 1.0 if measurand.endswith("Import") else -1.0
            key = "total" if phase < 0 else f"p{phase}"
            figures[key] = figures.get(key, 0.0) + direction * float(value)
        elif measurand == "Current.Import" and phase >= 0:
            figures[f"i{phase}"] = float(value)
        elif measurand == "Energy.Active.Import.Register" and phase < 0:
            figures["import"] = float(value)
        elif measurand == "Energy.Active.Export.Register" and phase < 0:
            figures["export"] = float(value)
    sign = -1.0 if config.invert else 1.0
    readings = []
    for at, f in sorted(groups.items()):
        if not any(k in f for k in ("p0", "p1", "p2", "total")):
            continue  # energy or current only: nothing the power controller can use

        def power(key: str, f: dict[str, Any] = f) -> float | None:
            return sign * f[key] if key in f else None

        readings.append(
            NewReading(
                meter_id=meter_id,
                at=at,
                power_w_l1=power("p0"),
                power_w_l2=power("p1"),
                power_w_l3=power("p2"),
                power_w_total=power("total"),
                current_a_l1=f.get("i0"),
                current_a_l2=f.get("i1"),
                current_a_l3=f.get("i2"),
                energy_import_wh=f.get("import"),
                energy_export_wh=f.get("export"),
            )
        )
    return readings


def record_main_meter(collected: list[MainMeterSamples]) -> None:
    """The worker's main-meter consumer: readings for every OCPP meter reading these chargers."""
    identities = sorted({c.identity for c in collected})
    communities = sorted({c.community_id for c in collected})
    meters = Meter.objects.with_scopes_disabled().filter(
        kind=Meter.Kind.OCPP,
        enabled=True,
        community_id__in=communities,
        config__charger__in=identities,
    )
    by_charger: dict[tuple[int, str], list[tuple[int, OcppConfig]]] = defaultdict(list)
    for meter in meters.only("pk", "community_id", "config"):
        try:
            config = OcppConfig.from_json(meter.config)
        except ValidationError:
            continue
        by_charger[(meter.community_id, config.charger)].append((meter.pk, config))
    if not by_charger:
        return
    readings: list[NewReading] = []
    for c in collected:
        for meter_id, config in by_charger.get((c.community_id, c.identity), ()):
            readings += to_readings(c.samples, config, meter_id, c.received_at)  # type: ignore[arg-type]
    record_readings(readings)
