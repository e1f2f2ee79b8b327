"""Typed values: what a reading's ``value`` may be, checked against its signal's value type.

One table of value types with a small code each (the stream record's ``vtype`` column and the
processor's column of the same name): 0 double, 1 int64, 2 bool, 3 string, 4 state. A double
travels as a float64; every other type travels beside it exactly (int64 in its own column,
text in its own list), so an int64 counter beyond 2**53 stays exact end to end.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.model.signals import SignalDef, ValueType

Value = float | int | bool | str

# the wire and column code of each value type (the record format's vtype byte)
TYPE_CODES: dict[ValueType, int] = {t: i for i, t in enumerate(ValueType)}
TYPES_BY_CODE: tuple[ValueType, ...] = tuple(ValueType)
DOUBLE_CODE = TYPE_CODES[ValueType.DOUBLE]
INT_CODE = TYPE_CODES[ValueType.INT64]
BOOL_CODE = TYPE_CODES[ValueType.BOOL]
TEXT_CODES = frozenset({TYPE_CODES[ValueType.STRING], TYPE_CODES[ValueType.STATE]})
# TEXT_LUT[vtype]: which readings are text, by table look-up (np.isin costs ~100 us a call)
TEXT_LUT = np.zeros(256, dtype=bool)
TEXT_LUT[sorted(TEXT_CODES)] = True

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_EXACT_FLOAT_INT = 2**53  # a float beyond this is not one integer for sure


# The largest magnitude a number may have (also the bound of a signal with an open range):
# rollups multiply values by seconds and add their squares, and PostgreSQL raises on a double
# that overflows instead of storing infinity, so 1e308 would stop every commit of its shard.
MAX_MAGNITUDE = 1e100


def _wrong(spec: SignalDef, value: object) -> InvalidInputError:
    got = "a boolean" if isinstance(value, bool) else type(value).__name__
    return InvalidInputError(
        ErrorCode.INVALID_READING, f"{spec.name} takes a {spec.value_type} value, got {got}"
    )


def _as_double(spec: SignalDef, value: Value) -> float:
    if isinstance(value, (bool, str)):
        raise _wrong(spec, value)
    try:
        number = float(value)
    except OverflowError:
        raise InvalidInputError(ErrorCode.INVALID_READING, "number out of range") from None
    if not math.isfinite(number):
        raise InvalidInputError(ErrorCode.VALUE_NOT_FINITE, "value must be a finite number")
    return number


def _as_int(spec: SignalDef, value: Value) -> int:
    if isinstance(value, (bool, str)):
        raise _wrong(spec, value)
    if isinstance(value, float):
        # an integral float (a client that writes 1234.0) is taken while it is exact
        if not (math.isfinite(value) and value.is_integer() and abs(value) <= _EXACT_FLOAT_INT):
            raise _wrong(spec, value)
        value = int(value)
    if not (INT64_MIN <= value <= INT64_MAX):
        raise InvalidInputError(ErrorCode.VALUE_OUT_OF_RANGE, f"{spec.name} must fit in int64")
    return value


def _as_bool(spec: SignalDef, value: Value) -> bool:
    if not isinstance(value, bool):
        raise _wrong(spec, value)
    return value


def _as_text(spec: SignalDef, value: object) -> str:
    if not isinstance(value, str):
        raise _wrong(spec, value)
    if len(value) > spec.max_length:
        raise InvalidInputError(
            ErrorCode.VALUE_TOO_LONG, f"{spec.name} takes at most {spec.max_length} characters"
        )
    if not value.isprintable():
        raise InvalidInputError(ErrorCode.INVALID_READING, "text values must be printable")
    return value


def _as_state(spec: SignalDef, value: object) -> str:
    text = _as_text(spec, value)
    if spec.states and text not in spec.states:
        raise InvalidInputError(
            ErrorCode.UNKNOWN_STATE,
            f"{text[:32]!r} is not a state of {spec.name}: {', '.join(spec.states)}",
        )
    return text


_COERCE = {
    ValueType.DOUBLE: _as_double,
    ValueType.INT64: _as_int,
    ValueType.BOOL: _as_bool,
    ValueType.STRING: _as_text,
    ValueType.STATE: _as_state,
}


def coerce_value(spec: SignalDef, value: Value) -> Value:
    """``value`` as its signal's type; raises ``InvalidInputError`` with a code otherwise."""
    coerce: Callable[[SignalDef, Value], Value] = _COERCE[spec.value_type]  # type: ignore[assignment]
    return coerce(spec, value)


def numeric_view(value: Value) -> float:
    """The value as a float for charts and detectors (a bool is 0/1; text is NaN)."""
    if isinstance(value, str):
        return math.nan
    return float(value)


def typed_at(
    code: int,
    value: float,
    ints: npt.NDArray[np.int64] | None,
    texts: npt.NDArray[np.object_] | None,
    i: int,
) -> Value:
    """Row ``i``'s value as its Python type, from the columns a record or batch holds."""
    if code == INT_CODE and ints is not None:
        return int(ints[i])
    if code == BOOL_CODE:
        return bool(value)
    if code in TEXT_CODES and texts is not None:
        return str(texts[i])
    return value
