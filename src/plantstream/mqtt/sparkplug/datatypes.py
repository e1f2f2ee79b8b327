"""Sparkplug B data types onto plantstream's value types: one table, read at birth.

Integers go on exactly (``int``, Int64 beyond 2**53 included), Float/Double as floats, Boolean
as ``bool``, String/Text/UUID as text (a ``string`` or ``state`` signal, per the catalog); a
date, bytes, a file, a data set, a template or an array is refused per metric
(``unsupported_datatype``). The signal's own value type (the catalog) has the last word:
``validate_fields`` refuses a value of another type.
"""

from __future__ import annotations

from dataclasses import dataclass

from plantstream.model.signals import ValueType


@dataclass(frozen=True, slots=True)
class TypeRule:
    """How a datatype's value is read: the oneof field, the plantstream type, its sign.

    Sparkplug carries signed 8/16/32-bit integers as two's complement in a uint32 and signed
    64-bit ones in a uint64, so ``signed_bits`` says where the sign is (0: unsigned).
    """

    name: str
    value_type: ValueType | None  # None: refused
    signed_bits: int = 0


_RULES = [
    (1, TypeRule("Int8", ValueType.INT64, 32)),
    (2, TypeRule("Int16", ValueType.INT64, 32)),
    (3, TypeRule("Int32", ValueType.INT64, 32)),
    (4, TypeRule("Int64", ValueType.INT64, 64)),
    (5, TypeRule("UInt8", ValueType.INT64)),
    (6, TypeRule("UInt16", ValueType.INT64)),
    (7, TypeRule("UInt32", ValueType.INT64)),
    (8, TypeRule("UInt64", ValueType.INT64)),
    (9, TypeRule("Float", ValueType.DOUBLE)),
    (10, TypeRule("Double", ValueType.DOUBLE)),
    (11, TypeRule("Boolean", ValueType.BOOL)),
    (12, TypeRule("String", ValueType.STRING)),
    (13, TypeRule("DateTime", None)),
    (14, TypeRule("Text", ValueType.STRING)),
    (15, TypeRule("UUID", ValueType.STRING)),
    (16, TypeRule("DataSet", None)),
    (17, TypeRule("Bytes", None)),
    (18, TypeRule("File", None)),
    (19, TypeRule("Template", None)),
]
DATATYPES: dict[int, TypeRule] = dict(_RULES)
UNKNOWN = TypeRule("Unknown", None)
BOOLEAN = 11
INT64 = 4


def rule_of(datatype: int) -> TypeRule:
    """The rule of ``datatype`` (property sets and arrays, 20 and up, are refused)."""
    return DATATYPES.get(datatype, UNKNOWN)


def signed(value: int, bits: int) -> int:
    """``value`` read as a two's-complement integer of ``bits`` bits (0: as it is)."""
    if bits and value >= 1 << (bits - 1):
        return value - (1 << bits)
    return value
