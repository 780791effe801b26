"""Modbus TCP meters, read with pymodbus: the register map of the meter's model (JSON files in
meters/registers/, one per model, each naming its source) says which registers hold which
figure, their type, word order and scale. Contiguous registers are read in one request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.client.mixin import ModbusClientMixin

from ..config import POWER_FIELDS, ModbusConfig, Register, RegisterMap
from ..readings import NewReading

MAX_BLOCK = 120  # registers per request (the protocol allows 125)
DATATYPES = {
    "int16": ModbusClientMixin.DATATYPE.INT16,
    "uint16": ModbusClientMixin.DATATYPE.UINT16,
    "int32": ModbusClientMixin.DATATYPE.INT32,
    "uint32": ModbusClientMixin.DATATYPE.UINT32,
    "float32": ModbusClientMixin.DATATYPE.FLOAT32,
    "int64": ModbusClientMixin.DATATYPE.INT64,
    "uint64": ModbusClientMixin.DATATYPE.UINT64,
    "float64": ModbusClientMixin.DATATYPE.FLOAT64,
}


class ReadError(Exception):
    """The meter answered with an error (illegal address, busy …)."""


@dataclass(frozen=True)
class Block:
    function: str
    address: int
    count: int
    registers: tuple[Register, ...]


def blocks(registers: Iterable[Register]) -> list[Block]:
    """The requests that read `registers`: adjacent registers of one function share one."""
    result: list[Block] = []
    ordered = sorted(registers, key=lambda r: (r.function, r.address))
    for reg in ordered:
        last = result[-1] if result else None
        if (
            last is not None
            and last.function == reg.function
            and reg.address <= last.address + last.count
            and reg.address + reg.count - last.address <= MAX_BLOCK
        ):
            count = max(last.count, reg.address + reg.count - last.address)
            result[-1] = Block(last.function, last.address, count, (*last.registers, reg))
        else:
            result.append(Block(reg.function, reg.address, reg.count, (reg,)))
    return result


def decode_register(reg: Register, words: list[int]) -> float:
    value = ModbusClientMixin.convert_from_registers(
        words, DATATYPES[reg.type], word_order=reg.word_order
    )
    return float(value) * reg.scale  # type: ignore[arg-type]


def encode_register(reg: Register, value: float) -> list[int]:
    """The words a meter of this model holds for `value` (tests and the demo serve them)."""
    raw: Any = value / reg.scale
    if not reg.type.startswith("float"):
        raw = round(raw)
    return ModbusClientMixin.convert_to_registers(
        raw, DATATYPES[reg.type], word_order=reg.word_order
    )


async def read(
    client: AsyncModbusTcpClient, config: ModbusConfig, meter_id: int, at: datetime
) -> NewReading:
    """One reading of the meter behind `client` (connected). Raises ReadError, or pymodbus'
    ModbusException / ConnectionError when the link fails."""
    regmap: RegisterMap = config.register_map
    values: dict[str, float] = {}
    for block in blocks(regmap.registers):
        reader = (
            client.read_input_registers
            if block.function == "input"
            else client.read_holding_registers
        )
        response = await reader(block.address, count=block.count, device_id=config.unit)
        if response.isError():
            raise ReadError(f"{block.function} registers {block.address}+{block.count}: {response}")
        words = list(response.registers)
        if len(words) < block.count:
            raise ReadError(f"{block.function} registers {block.address}: short answer")
        for reg in block.registers:
            offset = reg.address - block.address
            value = decode_register(reg, words[offset : offset + reg.count])
            if reg.field in POWER_FIELDS and config.invert:
                value = -value
            values[reg.field] = value
    return NewReading(meter_id=meter_id, at=at, **values)
