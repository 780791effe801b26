"""Reading what a charger reported, and refusing what the database must never see.

Everything a charger sends is checked here before it becomes a row: times, meter values, ids,
text and JSON. A value that cannot be right (a 10^15 Wh register, a negative energy, an id that
does not fit its column) raises `Rejected`; the event is then quarantined with the reason
(`chargers.events.quarantine`) and the rest of the batch is recorded. Text is cleaned of what
PostgreSQL refuses (NUL characters, lone surrogates) and cut to its column.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, NamedTuple

from django.utils import timezone

ENERGY_REGISTER = "Energy.Active.Import.Register"

# A charger's energy register, in Wh: 10 GWh is 50 years of a 22 kW outlet at full power. More
# is a corrupt or hostile value, and 10^13 no longer fits the session's columns.
MAX_REGISTER_WH = Decimal(10) ** 10
# Any other sample (power, current, voltage, SoC …) must fit MeterSample.value (16 digits, 3
# decimals) with room to spare.
MAX_SAMPLE_ABS = Decimal(10) ** 12
# Ids stored in PositiveIntegerField columns (EVSE, connector): OCPP numbers them from 0 up.
MAX_OUTLET_NUMBER = 10_000
MAX_TRANSACTION_ID = 64  # ChargingSession.transaction_id
MAX_SAMPLES_PER_EVENT = 2_000
# Times a charger can mean. Outside, its clock is wrong (1970 after a reboot) or the value is
# hostile (year 1 with a +14:00 offset does not even convert to UTC).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

# JSON kept for display (message log, command answers, configuration values).
MAX_JSON_DEPTH = 32
MAX_JSON_CHARS = 65_536

_INT32 = 2**31 - 1


class Rejected(ValueError):
    """An event carries a value that must not reach the database; `str(e)` says which."""


def clean_text(value: Any, limit: int) -> str:
    """`value` as text PostgreSQL accepts (no NUL, no lone surrogate), at most `limit` chars."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def parse_time(value: Any, default: datetime | None = None) -> datetime | None:
    """An aware datetime from an OCPP/ISO 8601 string; naive times are UTC (what chargers
    mean); unparseable or impossible values (before 2000, after 2100) give `default` rather
    than failing the whole batch."""
    if isinstance(value, str):
        parsed = _parse_text(value) if value and len(value) <= 64 else None
        return default if parsed is None else parsed
    if isinstance(value, datetime):
        return _checked(value) or default
    return default


@lru_cache(maxsize=8192)
def _parse_text(value: str) -> datetime | None:
    # A batch repeats the same few times (received_at, sample timestamps): parsed once each.
    try:
        return _checked(datetime.fromisoformat(value.strip()))
    except ValueError:
        return None


def _checked(dt: datetime) -> datetime | None:
    if timezone.is_naive(dt):
        dt = dt.replace(tzinfo=UTC)
    try:
        if not EARLIEST <= dt < LATEST:
            return None
    except OverflowError:
        return None
    return dt


def to_decimal(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, str) and len(value) > 64:
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


_KILO_UNITS = frozenset(("kwh", "kvarh", "kw", "kvar", "kva"))


def sample_value(sample: Mapping[str, Any]) -> Decimal | None:
    """The sample's value in the unit we store: energy in Wh (chargers may report kWh)."""
    value = to_decimal(sample.get("value"))
    if value is None:
        return None
    unit = str(sample.get("unit") or "").strip()
    if unit.lower() in _KILO_UNITS:
        value *= 1000
    return value


class SampleLabels(NamedTuple):
    """What a sample says besides its value and time, as stored (`sample_labels`)."""

    measurand: str  # as reported (`measurand`), for the checks
    name: str  # the measurand cut to its column
    phase: str
    context: str
    unit: str  # the stored unit (`sample_unit`), cut to its column
    kilo: bool  # the value is in k…: × 1000 to the stored unit (`sample_value`)


def sample_labels(sample: Mapping[str, Any]) -> SampleLabels:
    """The labels of a sample, computed once per distinct combination: a batch's thousands of
    samples repeat a dozen (energy, power, current per phase…), and cleaning four texts per
    sample was a tenth of the worker's CPU. Same results as `measurand`, `sample_unit`,
    `sample_value` and `clean_text`."""
    key = (sample.get("measurand"), sample.get("phase"), sample.get("context"), sample.get("unit"))
    try:
        return _labels(*key)
    except TypeError:  # an unhashable value (a list where text was expected): not cached
        return _labels.__wrapped__(*key)


@lru_cache(maxsize=4096, typed=True)  # typed: 1 and True and "1" are different labels
def _labels(name: Any, phase: Any, context: Any, unit: Any) -> SampleLabels:
    reported = {"measurand": name, "unit": unit}
    return SampleLabels(
        measurand=measurand(reported),
        name=clean_text(measurand(reported), 60),
        phase=clean_text(phase, 10),
        context=clean_text(context, 30),
        unit=clean_text(sample_unit(reported), 10),
        kilo=str(unit or "").strip().lower() in _KILO_UNITS,
    )


def sample_unit(sample: Mapping[str, Any]) -> str:
    unit = str(sample.get("unit") or "").strip()
    if unit.lower().startswith("k") and len(unit) > 1:
        return unit[1:]
    if not unit and str(sample.get("measurand") or ENERGY_REGISTER).startswith("Energy"):
        return "Wh"
    return unit


def measurand(sample: Mapping[str, Any]) -> str:
    return str(sample.get("measurand") or ENERGY_REGISTER)


def check_register(value: Decimal | None, what: str) -> Decimal | None:
    """A meter register reading (Wh) the columns can hold and a meter can show, or Rejected."""
    if value is None:
        return None
    if value < 0:
        raise Rejected(f"negative energy register: {what} = {value} Wh")
    if value > MAX_REGISTER_WH:
        raise Rejected(f"absurd energy register: {what} = {value} Wh")
    return value


def check_samples(samples: Any) -> list[dict]:
    """The samples of an event, each value within its bounds, or Rejected."""
    if samples is None:
        return []
    if not isinstance(samples, list):
        raise Rejected("samples is not a list")
    if len(samples) > MAX_SAMPLES_PER_EVENT:
        raise Rejected(f"{len(samples)} samples in one event")
    for s in samples:
        if not isinstance(s, dict):
            raise Rejected("a sample is not an object")
        value = to_decimal(s.get("value"))
        if value is None:
            continue  # skipped when applied, like any unreadable sample
        labels = sample_labels(s)
        if labels.kilo:
            value *= 1000
        name = labels.measurand
        if name.startswith("Energy"):
            check_register(value, name)
        elif abs(value) > MAX_SAMPLE_ABS:
            raise Rejected(f"absurd sample: {name} = {s.get('value')} {s.get('unit') or ''}")
    return samples


def check_outlet(evse_id: Any, connector_id: Any) -> None:
    for name, value in (("evse_id", evse_id), ("connector_id", connector_id)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise Rejected(f"{name} is not an integer: {value!r}"[:200])
        if not 0 <= value <= MAX_OUTLET_NUMBER:
            raise Rejected(f"{name} out of range: {value}")


def check_transaction_id(value: Any) -> str:
    if value is None or value == "":
        raise Rejected("no transaction id")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Rejected(f"transaction id is not text: {str(value)[:60]}")
    text = str(value)
    if len(text) > MAX_TRANSACTION_ID:
        raise Rejected(f"transaction id longer than {MAX_TRANSACTION_ID} characters")
    return clean_text(text, MAX_TRANSACTION_ID)


def small_int(value: Any) -> int | None:
    """An int that fits a 32-bit column, else None (informative fields such as seqNo)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if -_INT32 <= n <= _INT32 else None


# --- JSON for display --------------------------------------------------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _depth(text: str) -> int:
    """Nesting depth of a JSON text, without parsing it (strings stripped first)."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        if m.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def safe_json(value: Any, depth: int = 0) -> Any:
    """`value` as JSON PostgreSQL's jsonb stores: text cleaned, non-finite numbers as text.
    Raises Rejected when it is nested deeper than MAX_JSON_DEPTH."""
    if depth > MAX_JSON_DEPTH:
        raise Rejected("JSON nested too deep")
    if isinstance(value, str):
        return clean_text(value, MAX_JSON_CHARS)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {clean_text(k, 200): safe_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_json(v, depth + 1) for v in value]
    return clean_text(value, 200)


def bounded_json(value: Any) -> Any:
    """safe_json, or {"raw": <text>} when `value` is too deep or too big to keep as a structure."""
    try:
        cleaned = safe_json(value)
        text = json.dumps(cleaned, ensure_ascii=False)
    except (Rejected, RecursionError, ValueError, TypeError):
        return {"raw": clean_text(repr(value), 2_000)}
    if len(text) > MAX_JSON_CHARS:
        return {"raw": clean_text(text, MAX_JSON_CHARS)}
    return cleaned


def frame_payload(frame: str, message_type: int) -> Any:
    """What the message log shows of a raw OCPP frame (as text, from the gateway): the payload
    of a CALL or CALLRESULT, the error of a CALLERROR, or {"raw": text} when the frame cannot
    be decoded safely (too big, nested too deep, not JSON, not an OCPP frame)."""
    text = clean_text(frame, MAX_JSON_CHARS + 1)
    raw = {"raw": text[:MAX_JSON_CHARS]}
    if len(text) > MAX_JSON_CHARS or _depth(text) > MAX_JSON_DEPTH:
        return raw
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        return raw
    if not isinstance(decoded, list) or len(decoded) < 3:
        return raw
    try:
        if message_type == 2 and len(decoded) >= 4:
            return safe_json(decoded[3])
        if message_type == 3:
            return safe_json(decoded[2])
        if message_type == 4 and len(decoded) >= 5:
            return safe_json(
                {
                    "errorCode": decoded[2],
                    "errorDescription": decoded[3],
                    "errorDetails": decoded[4],
                }
            )
    except Rejected:
        return raw
    return raw
