"""MQTT meters: a topic carrying power per phase as home-energy systems publish it (Tasmota,
Shelly, Home Assistant, a P1 reader …), read with paho-mqtt.

`decode` turns one payload into a reading (pure, tested on its own). `MqttLink` is one broker
connection, in its own thread (paho's network loop is blocking), shared by every meter on that
broker: it subscribes to their topics, decodes what arrives and hands readings to run_meters.
It reconnects by itself with a bounded, jittered backoff and reports each state change once."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import paho.mqtt.client as mqtt
from django.utils import timezone

from .. import paths
from ..config import POWER_FIELDS, Broker, MqttConfig
from ..readings import NewReading
from . import retry_delay

logger = logging.getLogger("meters.mqtt")

MAX_PAYLOAD_BYTES = 65_536
KEEPALIVE_SECONDS = 30


class PayloadError(ValueError):
    """The payload does not carry what the meter's configuration expects."""


def decode(config: MqttConfig, meter_id: int, payload: bytes, at: datetime) -> NewReading:
    """The reading in `payload`, or PayloadError saying why not."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        raise PayloadError(f"not JSON: {payload[:60]!r}") from None
    values: dict[str, float] = {}
    for field, path in config.paths.items():
        try:
            value = paths.pick(data, paths.parse(path))
        except paths.PathError as e:
            raise PayloadError(f"{field}: {e}") from None
        if field in POWER_FIELDS:
            value *= -config.scale if config.invert else config.scale
        values[field] = value
    return NewReading(meter_id=meter_id, at=at, **values)


@dataclass(frozen=True)
class Route:
    meter_id: int
    config: MqttConfig


class MqttLink:
    """One broker connection in its own thread. `on_reading(reading)` and
    `on_state(meter_id, error_or_empty)` are called from that thread."""

    def __init__(
        self,
        broker: Broker,
        on_reading: Callable[[NewReading], None],
        on_state: Callable[[int, str], None],
    ):
        self.broker = broker
        self.on_reading = on_reading
        self.on_state = on_state
        self._routes: dict[str, list[Route]] = {}
        self._subscribed: set[str] = set()
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"sparklin-meters-{uuid.uuid4().hex[:12]}",
            clean_session=True,
        )
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    # --- called from run_meters' loop ---------------------------------------------------------
    def set_routes(self, routes: list[Route]) -> None:
        by_topic: dict[str, list[Route]] = {}
        for route in routes:
            by_topic.setdefault(route.config.topic, []).append(route)
        with self._lock:
            self._routes = by_topic
        self._changed.set()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"mqtt {self.broker.display}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the link's thread --------------------------------------------------------------------
    def _meters(self) -> list[int]:
        with self._lock:
            return [r.meter_id for routes in self._routes.values() for r in routes]

    def _report_all(self, error: str) -> None:
        for meter_id in self._meters():
            self.on_state(meter_id, error)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self.client.connect(self.broker.host, self.broker.port, KEEPALIVE_SECONDS)
            except (OSError, ValueError) as e:
                attempt += 1
                delay = retry_delay(attempt)
                if attempt <= 2:
                    logger.warning(
                        "mqtt %s: cannot connect (%s); retrying with backoff",
                        self.broker.display,
                        e,
                    )
                self._report_all(f"MQTT broker {self.broker.display}: {e}"[:300])
                self._stop.wait(delay)
                continue
            self._subscribed = set()
            self._changed.set()
            was_connected = False
            while not self._stop.is_set():
                try:
                    rc = self.client.loop(timeout=0.5)
                except Exception:  # TLS or socket trouble paho did not turn into a code
                    logger.exception("mqtt %s: network loop failed", self.broker.display)
                    rc = mqtt.MQTT_ERR_CONN_LOST
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                was_connected = was_connected or self._connected
                if self._connected and self._changed.is_set():
                    self._changed.clear()
                    self._resubscribe()
            if self._connected and not self._stop.is_set():
                logger.warning("mqtt %s: connection lost", self.broker.display)
                self._report_all(f"MQTT broker {self.broker.display}: connection lost")
            self._connected = False
            # A link that was up starts the backoff again; a refused login keeps climbing it.
            attempt = 1 if was_connected else attempt + 1
            if not self._stop.is_set():
                self._stop.wait(retry_delay(attempt))
        try:
            self.client.disconnect()
        except Exception:  # closing what may already be gone
            pass

    def _resubscribe(self) -> None:
        with self._lock:
            wanted = set(self._routes)
        for topic in sorted(wanted - self._subscribed):
            self.client.subscribe(topic, qos=0)
        for topic in sorted(self._subscribed - wanted):
            self.client.unsubscribe(topic)
        self._subscribed = wanted

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.warning("mqtt %s: refused: %s", self.broker.display, reason_code)
            self._report_all(f"MQTT broker {self.broker.display}: {reason_code}")
            client.disconnect()
            return
        logger.info("mqtt %s: connected", self.broker.display)
        self._connected = True
        self._subscribed = set()
        self._changed.set()

    def _on_message(self, client, userdata, message) -> None:
        # An exception escaping a callback would end paho's loop, and this thread with it.
        try:
            self._deliver(message)
        except Exception:
            logger.exception(
                "mqtt %s: message on %s not handled", self.broker.display, message.topic
            )

    def _deliver(self, message) -> None:
        at = timezone.now()
        with self._lock:
            routes = list(self._routes.get(message.topic, ()))
        for route in routes:
            try:
                reading = decode(route.config, route.meter_id, message.payload, at)
            except PayloadError as e:
                self.on_state(route.meter_id, f"MQTT payload on {message.topic}: {e}"[:300])
                continue
            self.on_reading(reading)
