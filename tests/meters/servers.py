"""Real servers of each kind on loopback for the meter tests (and power's end-to-end run): a
pymodbus Modbus TCP server serving a model's registers with known values, the machine's
Mosquitto broker with a per-test topic prefix, and run_meters' Runner in a thread."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from bench import free_port
from meters.config import register_maps
from meters.runner import Runner
from meters.sources import modbus

MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883


def wait_until(condition: Callable[[], object], timeout: float = 15.0, every: float = 0.1):
    """`condition()`'s first truthy value, or AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {condition}")
        time.sleep(every)


class LoopThread:
    """An asyncio loop in a thread, for servers and the runner the test body drives."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class ModbusMeterServer:
    """A Modbus TCP server holding `values` (reading field → number) where meter `model` keeps
    them, for device `unit`. `set(field=value)` changes them while it runs; `stop()` and
    `start()` take it off and back on the network (same port)."""

    def __init__(self, model: str, values: dict[str, float], unit: int = 1):
        self.regmap = register_maps()[model]
        self.values = dict(values)
        self.unit = unit
        self.port = free_port()
        self.loop = LoopThread(f"modbus {model}")
        self.server: ModbusTcpServer | None = None
        self.start()

    def _device(self) -> SimDevice:
        blocks: dict[str, list[SimData]] = {"holding": [], "input": []}
        for reg in self.regmap.registers:
            words = modbus.encode_register(reg, self.values.get(reg.field, 0.0))
            blocks[reg.function].append(
                SimData(address=reg.address, values=words, datatype=DataType.REGISTERS)
            )
        for block in blocks.values():  # pymodbus wants every block non-empty
            if not block:
                block.append(SimData(address=65000, values=[0], datatype=DataType.REGISTERS))
        bits = [SimData(address=0, values=False, datatype=DataType.BITS)]
        return SimDevice(id=self.unit, simdata=(bits, bits, blocks["holding"], blocks["input"]))

    def start(self) -> None:
        async def serve():
            self.server = ModbusTcpServer(self._device(), address=("127.0.0.1", self.port))
            await self.server.serve_forever(background=True)

        self.loop.run(serve())

    def stop(self) -> None:
        if self.server is not None:
            self.loop.run(self.server.shutdown())
            self.server = None

    def set(self, **values: float) -> None:
        self.values.update(values)
        self.stop()
        self.start()

    def update(self, **values: float) -> None:
        """Change values while serving, in place (no reconnection: a live meter's feed)."""
        self.values.update(values)
        if self.server is None:
            return
        server = self.server
        codes = {"holding": 3, "input": 4}

        async def write():
            for reg in self.regmap.registers:
                if reg.field in values:
                    words = modbus.encode_register(reg, values[reg.field])
                    await server.async_setValues(self.unit, codes[reg.function], reg.address, words)

        self.loop.run(write())

    def close(self) -> None:
        self.stop()
        self.loop.close()


class Publisher:
    """Publishes on the machine's Mosquitto under a topic prefix of its own."""

    def __init__(self):
        self.prefix = f"meters-{uuid.uuid4().hex[:10]}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.connect(MQTT_HOST, MQTT_PORT, 30)
        self.client.loop_start()

    def topic(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def publish(self, name: str, payload) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(self.topic(name), data, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class RunnerThread:
    """run_meters' Runner on a loop of its own, as the management command runs it."""

    def __init__(self, **options):
        self.runner = Runner(**{"reload_seconds": 0.3, "flush_seconds": 0.2, **options})
        self.loop = LoopThread("run_meters")
        self.stop_event = asyncio.Event()
        self.future = asyncio.run_coroutine_threadsafe(self._run(), self.loop.loop)

    async def _run(self) -> None:
        await self.runner.run(self.stop_event)

    def close(self) -> None:
        self.loop.loop.call_soon_threadsafe(self.stop_event.set)
        self.future.result(15)
        self.loop.close()
