"""Modbus register maps: how many 16-bit registers a data type takes and how to decode them.

Word order says which register holds the most significant 16 bits (``big``: the first, the
Modbus convention); byte order says how the two bytes of each register are read (``big``:
high byte first, as on the wire). ``scale`` and ``offset`` give ``raw * scale + offset``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Literal

from plantstream.edge.config import ModbusSignal, ValueKind

REGISTERS = {
    "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4,
    "float32": 2, "float64": 4, "bool": 1,
}  # fmt: skip
_FORMAT = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
    "float32": "f", "float64": "d",
}  # fmt: skip


def value_kind(signal: ModbusSignal) -> ValueKind:
    """bool for coils, double when scaled or a float, else an exact int64."""
    if signal.data_type == "bool":
        return ValueKind.BOOL
    if signal.data_type.startswith("float") or signal.scale != 1.0 or signal.offset != 0.0:
        return ValueKind.DOUBLE
    return ValueKind.INT64


def decode(signal: ModbusSignal, registers: Sequence[int]) -> float | int:
    """The value of ``registers`` (as read, in address order) under ``signal``'s map."""
    words = list(registers[: REGISTERS[signal.data_type]])
    if signal.word_order == "little":
        words.reverse()
    raw_bytes = b"".join(
        w.to_bytes(2, "big" if signal.byte_order == "big" else "little") for w in words
    )
    (raw,) = struct.unpack(">" + _FORMAT[signal.data_type], raw_bytes)
    if value_kind(signal) is ValueKind.INT64:
        return int(raw)
    return float(raw) * signal.scale + signal.offset


def encode(signal: ModbusSignal, value: float) -> list[int]:
    """The registers that hold ``value`` (already raw, unscaled): for tests and simulators."""
    fmt = _FORMAT[signal.data_type]
    number = value if fmt in "fd" else int(value)
    raw_bytes = struct.pack(">" + fmt, number)
    order: Literal["big", "little"] = "big" if signal.byte_order == "big" else "little"
    words = [int.from_bytes(raw_bytes[i : i + 2], order) for i in range(0, len(raw_bytes), 2)]
    if signal.word_order == "little":
        words.reverse()
    return words
