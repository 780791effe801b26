"""What each kind of meter needs to be reached, as the JSON stored in `Meter.config`.

One home for the rules: the portal's form builds the dict and validates it here, run_meters and
the worker read it back through the same classes, so a configuration that passed the form is
one the sources understand. Errors are translatable (the form shows them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from . import paths

REGISTERS_DIR = Path(__file__).resolve().parent / "registers"

# The figures a source may give, named as the NewReading fields.
POWER_FIELDS = ("power_w_l1", "power_w_l2", "power_w_l3", "power_w_total")
CURRENT_FIELDS = ("current_a_l1", "current_a_l2", "current_a_l3")
ENERGY_FIELDS = ("energy_import_wh", "energy_export_wh")
READING_FIELDS = POWER_FIELDS + CURRENT_FIELDS + ENERGY_FIELDS

MIN_POLL_SECONDS = 1
MAX_POLL_SECONDS = 3600
REGISTER_TYPES = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
REGISTER_TYPES |= {"int64": 4, "uint64": 4, "float64": 4}
# OCPP SampledValue locations a main meter may report from; "" accepts any.
OCPP_LOCATIONS = ("", "Inlet", "Outlet")


def _number(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if value in (None, ""):
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(_("%(key)s must be a number."), params={"key": key})
    try:
        return float(value)
    except ValueError:
        raise ValidationError(_("%(key)s must be a number."), params={"key": key}) from None


def _integer(data: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    number = _number(data, key, default)
    if number != int(number) or not low <= number <= high:
        raise ValidationError(
            _("%(key)s must be a whole number from %(low)s to %(high)s."),
            params={"key": key, "low": low, "high": high},
        )
    return int(number)


def _scale(data: dict[str, Any]) -> float:
    scale = _number(data, "scale", 1.0)
    if scale == 0 or abs(scale) > 1e6:
        raise ValidationError(_("The scale must be a non-zero number (1000 for kW)."))
    return scale


# --- MQTT --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @property
    def key(self) -> str:
        """One connection per distinct broker and account."""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.username or ''}@{self.host}:{self.port}"

    @property
    def display(self) -> str:
        return f"{self.host}:{self.port}"


def parse_broker(url: str) -> Broker:
    """`mqtt://[user[:password]@]host[:port]` (or `mqtts://` for TLS)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValidationError(_("Not a broker address: %(url)s"), params={"url": url}) from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or parts.path not in ("", "/"):
        raise ValidationError(
            _("The broker is written mqtt://host:port (or mqtts:// for TLS)."),
        )
    tls = parts.scheme == "mqtts"
    return Broker(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def check_topic(topic: str) -> str:
    topic = topic.strip()
    if not topic or len(topic) > 200 or "\x00" in topic:
        raise ValidationError(_("Enter the topic the meter publishes on."))
    if "+" in topic or "#" in topic:
        raise ValidationError(_("One topic per meter: no wildcards (+, #)."))
    return topic


@dataclass(frozen=True)
class MqttConfig:
    broker: str  # "" = settings.METER_MQTT_URL
    topic: str
    paths: dict[str, str]  # reading field → dotted path in the payload
    scale: float = 1.0  # applied to power (1000 when the payload is in kW)
    invert: bool = False  # the source counts export as positive

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MqttConfig:
        broker = str(data.get("broker") or "").strip()
        parse_broker(broker or settings.METER_MQTT_URL)
        raw_paths = data.get("paths") or {}
        if not isinstance(raw_paths, dict):
            raise ValidationError(_("The JSON paths are not a mapping."))
        found: dict[str, str] = {}
        for field in POWER_FIELDS + CURRENT_FIELDS:
            path = str(raw_paths.get(field) or "").strip()
            if not path:
                continue
            try:
                paths.parse(path)
            except ValueError:
                raise ValidationError(
                    _("“%(path)s” is not a JSON path (e.g. ENERGY.Power.0, or $)."),
                    params={"path": path},
                ) from None
            found[field] = path
        if not any(f in found for f in POWER_FIELDS):
            raise ValidationError(
                _("Give the JSON path of the power of at least one phase or of the total.")
            )
        return cls(
            broker=broker,
            topic=check_topic(str(data.get("topic") or "")),
            paths=found,
            scale=_scale(data),
            invert=bool(data.get("invert", False)),
        )

    @property
    def broker_url(self) -> str:
        return self.broker or settings.METER_MQTT_URL

    def to_json(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "topic": self.topic,
            "paths": dict(self.paths),
            "scale": self.scale,
            "invert": self.invert,
        }


# --- Modbus TCP --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Register:
    field: str
    address: int
    function: str  # "input" (04) | "holding" (03)
    type: str
    word_order: Literal["big", "little"]  # "big": the high word first
    scale: float

    @property
    def count(self) -> int:
        return REGISTER_TYPES[self.type]


@dataclass(frozen=True)
class RegisterMap:
    key: str
    name: str
    source: str
    registers: tuple[Register, ...]


def _load_map(path: Path) -> RegisterMap:
    data = json.loads(path.read_text())
    function = data.get("function", "input")
    word_order = data.get("word_order", "big")
    registers = []
    for field, spec in data["registers"].items():
        register = Register(
            field=field,
            address=int(spec["address"]),
            function=spec.get("function", function),
            type=spec["type"],
            word_order=cast(Literal["big", "little"], spec.get("word_order", word_order)),
            scale=float(spec.get("scale", 1)),
        )
        if (
            field not in READING_FIELDS
            or register.function not in ("input", "holding")
            or register.type not in REGISTER_TYPES
            or register.word_order not in ("big", "little")
            or not 0 <= register.address <= 65535 - register.count
        ):
            raise ValueError(f"{path.name}: bad register {field}: {spec}")
        registers.append(register)
    return RegisterMap(path.stem, data["name"], data["source"], tuple(registers))


@cache
def register_maps() -> dict[str, RegisterMap]:
    """The meter models run_meters can read: one JSON file each in meters/registers/."""
    return {p.stem: _load_map(p) for p in sorted(REGISTERS_DIR.glob("*.json"))}


@dataclass(frozen=True)
class ModbusConfig:
    host: str
    port: int
    unit: int
    model: str
    interval: int  # seconds between polls
    invert: bool = False  # current transformers mounted the other way round

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModbusConfig:
        host = str(data.get("host") or "").strip()
        if not host or len(host) > 253 or any(c in host for c in " /:@"):
            raise ValidationError(_("Enter the meter's host name or IP address."))
        model = str(data.get("model") or "")
        if model not in register_maps():
            raise ValidationError(_("Unknown meter model: %(model)s"), params={"model": model})
        return cls(
            host=host,
            port=_integer(data, "port", 502, 1, 65535),
            unit=_integer(data, "unit", 1, 0, 247),
            model=model,
            interval=_integer(data, "interval", 5, MIN_POLL_SECONDS, MAX_POLL_SECONDS),
            invert=bool(data.get("invert", False)),
        )

    @property
    def register_map(self) -> RegisterMap:
        return register_maps()[self.model]

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "unit": self.unit,
            "model": self.model,
            "interval": self.interval,
            "invert": self.invert,
        }


# --- OCPP main meter ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OcppConfig:
    charger: str  # the identity of the charger (or standalone OCPP meter) that reports it
    location: str = ""  # "Inlet" | "Outlet" | "" (any)
    invert: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OcppConfig:
        charger = str(data.get("charger") or "").strip()
        if not charger or len(charger) > 48:
            raise ValidationError(_("Choose the charger that reports the main meter."))
        location = str(data.get("location") or "")
        if location not in OCPP_LOCATIONS:
            raise ValidationError(_("Unknown measuring location: %(v)s"), params={"v": location})
        return cls(charger=charger, location=location, invert=bool(data.get("invert", False)))

    def to_json(self) -> dict[str, Any]:
        return {
            "charger": self.charger,
            "evse": 0,
            "location": self.location,
            "invert": self.invert,
        }


# --- the demo's simulated meter ----------------------------------------------------------------
@dataclass(frozen=True)
class SimulatedConfig:
    # Sized for the demo's 3 × 32 A warehouse: at its busiest (compressor on), the building
    # leaves about 9 A on L1, so one of two charging cars pauses; the rest of the day both
    # charge with limits that follow the load.
    base_w: float = 2500.0  # night-time building load, per site
    peak_w: float = 5500.0  # added at the busiest hour of a working day
    interval: int = 5
    seed: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimulatedConfig:
        return cls(
            base_w=_number(data, "base_w", cls.base_w),
            peak_w=_number(data, "peak_w", cls.peak_w),
            interval=_integer(data, "interval", 5, MIN_POLL_SECONDS, MAX_POLL_SECONDS),
            seed=_integer(data, "seed", 0, 0, 2**31),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "base_w": self.base_w,
            "peak_w": self.peak_w,
            "interval": self.interval,
            "seed": self.seed,
        }


AnyConfig = MqttConfig | ModbusConfig | OcppConfig | SimulatedConfig
CONFIG_CLASSES: dict[str, type[AnyConfig]] = {
    "mqtt": MqttConfig,
    "modbus": ModbusConfig,
    "ocpp": OcppConfig,
    "simulated": SimulatedConfig,
}


def parse_config(kind: str, data: Any) -> AnyConfig:
    """The typed configuration of a meter of `kind`, or ValidationError."""
    if kind not in CONFIG_CLASSES:
        raise ValidationError(_("Unknown meter kind: %(kind)s"), params={"kind": kind})
    if not isinstance(data, dict):
        raise ValidationError(_("The configuration is not a mapping."))
    return CONFIG_CLASSES[kind].from_json(data)


def describe(kind: str, data: Any) -> str:
    """One line saying where the meter is read from (the site page shows it)."""
    try:
        config = parse_config(kind, data)
    except ValidationError:
        return ""
    if isinstance(config, MqttConfig):
        return f"{parse_broker(config.broker_url).display} · {config.topic}"
    if isinstance(config, ModbusConfig):
        return f"{config.register_map.name} · {config.host}:{config.port} #{config.unit}"
    if isinstance(config, OcppConfig):
        return f"{config.charger} · 0" + (f" · {config.location}" if config.location else "")
    return "demo"
