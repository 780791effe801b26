"""run_meters: one long-lived process reading every Modbus TCP, MQTT and simulated meter of
every site (OCPP main meters arrive through the worker instead, see meters.ocpp).

- One asyncio loop. Modbus meters are polled by one task each (pymodbus' async client); MQTT
  meters share one connection per broker, in a thread (`sources.mqtt.MqttLink`); simulated
  (demo) meters are computed by a task each.
- Readings are gathered in memory and written in bulk every FLUSH_SECONDS
  (`readings.record_readings`). The database is touched from one thread only, each call between
  `close_old_connections()`: a database restart costs a few retried flushes, not the process;
  readings wait in a bounded buffer meanwhile.
- The configuration is reloaded every RELOAD_SECONDS: a meter added, edited, disabled or
  deleted in the portal is picked up without a restart.
- Each change of a meter's state (reading / failing with a reason / silent) is logged in one
  line and kept in `Meter.last_error` for the site page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import close_old_connections, connections
from django.utils import timezone

from chargers.events import is_transient

from . import readings
from .config import (
    AnyConfig,
    ModbusConfig,
    MqttConfig,
    SimulatedConfig,
    parse_broker,
    parse_config,
)
from .models import Meter
from .readings import NewReading
from .sources import retry_delay

logger = logging.getLogger("meters.runner")

RELOAD_SECONDS = 2.0
FLUSH_SECONDS = 1.0
MAX_PENDING = 50_000  # readings kept while the database is away (a few minutes of a big fleet)
MODBUS_TIMEOUT_SECONDS = 3.0
RUN_KINDS = (Meter.Kind.MODBUS, Meter.Kind.MQTT, Meter.Kind.SIMULATED)
T = TypeVar("T")


@dataclass(frozen=True)
class Spec:
    """What run_meters knows of a meter: enough to read it, compared at each reload."""

    id: int
    name: str
    kind: str
    config: AnyConfig
    updated_at: datetime

    @property
    def label(self) -> str:
        return f"meter {self.id} ({self.name})"


def _in_db(func: Callable[..., T], *args: Any) -> T:
    close_old_connections()
    try:
        return func(*args)
    finally:
        close_old_connections()


def load_specs() -> tuple[dict[int, Spec], dict[int, str]]:
    """The enabled meters run_meters reads, and the configuration errors of the others."""
    specs: dict[int, Spec] = {}
    errors: dict[int, str] = {}
    rows = Meter.objects.with_scopes_disabled().filter(enabled=True, kind__in=RUN_KINDS)
    for meter in rows.only("pk", "name", "kind", "config", "updated_at"):
        try:
            config = parse_config(meter.kind, meter.config)
        except ValidationError as e:
            errors[meter.pk] = "configuration: " + "; ".join(str(m) for m in e.messages)
            continue
        specs[meter.pk] = Spec(meter.pk, meter.name, meter.kind, config, meter.updated_at)
    return specs, errors


def save_errors(errors: dict[int, str]) -> None:
    for meter_id, error in errors.items():
        Meter.objects.with_scopes_disabled().filter(pk=meter_id).exclude(
            last_error=error[:300]
        ).update(last_error=error[:300])


class Runner:
    def __init__(
        self, *, reload_seconds: float = RELOAD_SECONDS, flush_seconds: float = FLUSH_SECONDS
    ):
        self.reload_seconds = reload_seconds
        self.flush_seconds = flush_seconds
        self.db = ThreadPoolExecutor(1, thread_name_prefix="meters-db")
        self.specs: dict[int, Spec] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.links: dict[str, Any] = {}  # broker key → sources.mqtt.MqttLink
        self.pending: list[NewReading] = []
        self.state: dict[int, str] = {}  # meter → "" (reading) or what goes wrong
        self.unsaved: dict[int, str] = {}
        self.last_reading: dict[int, float] = {}  # meter → monotonic time
        self.silent: set[int] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def _db(self, func: Callable[..., T], *args: Any) -> T:
        assert self.loop is not None
        return await self.loop.run_in_executor(self.db, partial(_in_db, func, *args))

    # --- readings and states (event loop thread) ----------------------------------------------
    def submit(self, reading: NewReading) -> None:
        if len(self.pending) >= MAX_PENDING:
            del self.pending[: len(self.pending) // 10]
            logger.warning("meters: buffer full (database away?), oldest readings dropped")
        self.pending.append(reading)
        self.last_reading[reading.meter_id] = time.monotonic()
        self.report(reading.meter_id, "")

    def report(self, meter_id: int, error: str) -> None:
        """Log a meter's state once per change ("" = reading fine)."""
        if self.state.get(meter_id) == error:
            return
        spec = self.specs.get(meter_id)
        label = spec.label if spec else f"meter {meter_id}"
        if error:
            logger.warning("%s: %s", label, error)
        elif meter_id in self.state:
            logger.info("%s: reading again", label)
        else:
            logger.info("%s: reading", label)
        self.state[meter_id] = error
        self.unsaved[meter_id] = error

    def submit_threadsafe(self, reading: NewReading) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.submit, reading)

    def report_threadsafe(self, meter_id: int, error: str) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.report, meter_id, error)

    def check_silence(self, silent_seconds: float) -> None:
        now = time.monotonic()
        for meter_id, spec in self.specs.items():
            last = self.last_reading.get(meter_id)
            silent = last is None or now - last > silent_seconds
            if silent and meter_id not in self.silent and last is not None:
                logger.warning("%s: silent for %.0f s", spec.label, now - last)
            elif not silent and meter_id in self.silent and meter_id in self.state:
                logger.info("%s: speaking again", spec.label)
            if silent and last is not None:
                self.silent.add(meter_id)
            elif not silent:
                self.silent.discard(meter_id)

    # --- the loop -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        from django.conf import settings

        self.loop = asyncio.get_running_loop()
        logger.info("run_meters: started")
        next_reload = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() >= next_reload:
                    await self.reload()
                    next_reload = time.monotonic() + self.reload_seconds
                await self.flush()
                self.check_silence(settings.METER_SILENT_SECONDS)
                try:
                    await asyncio.wait_for(stop.wait(), self.flush_seconds)
                except TimeoutError:
                    pass
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()
        for link in self.links.values():
            await asyncio.to_thread(link.stop)
        self.links.clear()
        await self.flush()
        await self._db(connections.close_all)  # the DB thread's connection, before it goes
        self.db.shutdown(wait=True)
        logger.info("run_meters: stopped")

    async def flush(self) -> None:
        batch, self.pending = self.pending, []
        errors, self.unsaved = self.unsaved, {}
        try:
            if batch:
                await self._db(readings.record_readings, batch)
            if errors:
                await self._db(save_errors, errors)
        except Exception as exc:
            if not is_transient(exc):
                logger.exception("meters: %d readings could not be recorded", len(batch))
                return
            logger.warning(
                "meters: database unavailable (%s); keeping %d readings", exc, len(batch)
            )
            self.pending[:0] = batch
            self.unsaved = {**errors, **self.unsaved}

    async def reload(self) -> None:
        try:
            specs, errors = await self._db(load_specs)
        except Exception as exc:
            if is_transient(exc):
                logger.warning("meters: cannot reload the configuration (%s); keeping it", exc)
            else:
                logger.exception("meters: the configuration could not be reloaded; keeping it")
            return
        for meter_id, error in errors.items():
            self.report(meter_id, error)
        gone = [m for m in self.specs if m not in specs or specs[m] != self.specs[m]]
        for meter_id in gone:
            task = self.tasks.pop(meter_id, None)
            if task is not None:
                task.cancel()
            self.state.pop(meter_id, None)
            self.last_reading.pop(meter_id, None)
            self.silent.discard(meter_id)
            if meter_id not in specs:
                logger.info("%s: no longer read", self.specs[meter_id].label)
        new = {m: s for m, s in specs.items() if m not in self.specs or m in gone}
        self.specs = specs
        for spec in new.values():
            logger.info("%s: %s meter configured", spec.label, spec.kind)
            if isinstance(spec.config, ModbusConfig):
                self.tasks[spec.id] = asyncio.create_task(self.poll_modbus(spec, spec.config))
            elif isinstance(spec.config, SimulatedConfig):
                self.tasks[spec.id] = asyncio.create_task(self.simulate(spec, spec.config))
        self._route_mqtt()

    def _route_mqtt(self) -> None:
        from .sources.mqtt import MqttLink, Route

        routes: dict[str, list[Route]] = {}
        brokers = {}
        for spec in self.specs.values():
            if isinstance(spec.config, MqttConfig):
                broker = parse_broker(spec.config.broker_url)
                brokers[broker.key] = broker
                routes.setdefault(broker.key, []).append(Route(spec.id, spec.config))
        for key in [k for k in self.links if k not in routes]:
            self.links.pop(key).stop(timeout=0)
        for key, broker_routes in routes.items():
            link = self.links.get(key)
            if link is None:
                link = MqttLink(brokers[key], self.submit_threadsafe, self.report_threadsafe)
                self.links[key] = link
                link.set_routes(broker_routes)
                link.start()
            else:
                link.set_routes(broker_routes)

    # --- pollers ------------------------------------------------------------------------------
    async def poll_modbus(self, spec: Spec, config: ModbusConfig) -> None:
        from pymodbus.client import AsyncModbusTcpClient
        from pymodbus.exceptions import ModbusException

        from .sources import modbus

        attempt = 0
        client = AsyncModbusTcpClient(
            config.host,
            port=config.port,
            timeout=MODBUS_TIMEOUT_SECONDS,
            retries=0,
            reconnect_delay=0,  # the loop below reconnects, with its own backoff
        )
        try:
            while True:
                started = time.monotonic()
                try:
                    if not client.connected and not await client.connect():
                        raise ConnectionError(f"cannot connect to {config.host}:{config.port}")
                    reading = await modbus.read(client, config, spec.id, timezone.now())
                except (
                    ModbusException,
                    modbus.ReadError,
                    ConnectionError,
                    OSError,
                    TimeoutError,
                ) as e:
                    client.close()
                    attempt += 1
                    self.report(spec.id, f"Modbus {config.host}:{config.port}: {e}"[:300])
                    await asyncio.sleep(max(retry_delay(attempt), config.interval))
                    continue
                except Exception as e:  # a bug or an answer nobody foresaw: this meter only
                    logger.exception("%s: unexpected error", spec.label)
                    client.close()
                    attempt += 1
                    self.report(spec.id, f"Modbus {config.host}:{config.port}: {e!r}"[:300])
                    await asyncio.sleep(max(retry_delay(attempt), config.interval))
                    continue
                attempt = 0
                self.submit(reading)
                await asyncio.sleep(max(0.0, config.interval - (time.monotonic() - started)))
        finally:
            client.close()

    async def simulate(self, spec: Spec, config: SimulatedConfig) -> None:
        from .demo import building_load

        while True:
            now = timezone.now()
            l1, l2, l3 = building_load(now, config)
            self.submit(
                NewReading(meter_id=spec.id, at=now, power_w_l1=l1, power_w_l2=l2, power_w_l3=l3)
            )
            await asyncio.sleep(config.interval)
