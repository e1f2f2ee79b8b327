"""A file's value cells as one signal's type, column-wise: the numeric view (float64), the
exact int64 or text beside it, and a code for each cell that is not a value of that type.

Text cells (every CSV column) are cast by pyarrow in one go; a column with a bad cell is
read cell by cell, so the bad one is refused alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from plantstream.errors import ErrorCode
from plantstream.model import ValueType
from plantstream.model.values import TYPE_CODES

_TRUE = frozenset({"true", "1", "on", "yes"})
_FALSE = frozenset({"false", "0", "off", "no"})


@dataclass(slots=True)
class TypedCells:
    """Cells of one signal: ``ok`` marks those that are values of its type."""

    value: npt.NDArray[np.float64]
    vtype: int
    ints: npt.NDArray[np.int64] | None
    texts: npt.NDArray[np.object_] | None
    ok: npt.NDArray[np.bool_]
    errors: list[tuple[int, ErrorCode, str]]


def typed_cells(column: Any, value_type: ValueType, signal: str) -> TypedCells:
    """The non-null cells of ``column`` (a pyarrow array) as ``value_type`` values."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    text_column = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    if text_column and value_type not in (ValueType.STRING, ValueType.STATE):
        column = pc.utf8_trim_whitespace(column)
    code = TYPE_CODES[value_type]
    if value_type is ValueType.DOUBLE:
        value, ok, errors = _numbers(column, pa.float64(), signal, float)
        return TypedCells(value.astype(np.float64), code, None, None, ok, errors)
    if value_type is ValueType.INT64:
        ints, ok, errors = _numbers(column, pa.int64(), signal, _integer)
        ints = ints.astype(np.int64)
        return TypedCells(ints.astype(np.float64), code, ints, None, ok, errors)
    if value_type is ValueType.BOOL:
        flags, ok, errors = _booleans(column, signal)
        return TypedCells(flags.astype(np.float64), code, None, None, ok, errors)
    texts = np.array([None if v is None else str(v) for v in column.to_pylist()], dtype=object)
    ok = np.array([v is not None for v in texts], dtype=bool) if n else np.zeros(0, bool)
    return TypedCells(np.full(n, math.nan), code, None, texts, ok, [])


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        number = float(text)
        if not number.is_integer() or abs(number) > 2**53:
            raise ValueError(text) from None
        return int(number)


def _numbers(
    column: Any, target: pa.DataType, signal: str, parse: Any
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_], list[tuple[int, ErrorCode, str]]]:
    valid = np.asarray(column.is_valid(), dtype=bool)
    dtype = np.float64 if target == pa.float64() else np.int64
    if pa.types.is_boolean(column.type):
        errors = [
            (i, ErrorCode.INVALID_READING, f"{signal} takes a number, got a boolean")
            for i in np.flatnonzero(valid).tolist()
        ]
        return np.zeros(len(column), dtype=dtype), np.zeros(len(column), bool), errors
    try:
        cast = pc.cast(column, target)
        values = cast.fill_null(0).to_numpy(zero_copy_only=False)
        return values, valid.copy(), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values = np.zeros(len(column), dtype=dtype)
    ok = np.zeros(len(column), dtype=bool)
    refused: list[tuple[int, ErrorCode, str]] = []
    for i, cell in enumerate(column.to_pylist()):
        if cell is None:
            continue
        try:
            values[i] = parse(str(cell)) if not isinstance(cell, (int, float)) else parse(cell)
            ok[i] = True
        except (ValueError, OverflowError, TypeError):
            refused.append(
                (i, ErrorCode.INVALID_READING, f"{signal} takes a number, got {str(cell)[:32]!r}")
            )
    return values, ok, refused


def _booleans(
    column: Any, signal: str
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], list[tuple[int, ErrorCode, str]]]:
    valid = np.asarray(column.is_valid(), dtype=bool)
    if pa.types.is_boolean(column.type):
        return np.asarray(column.fill_null(False), dtype=bool), valid.copy(), []
    flags = np.zeros(len(column), dtype=bool)
    ok = np.zeros(len(column), dtype=bool)
    errors: list[tuple[int, ErrorCode, str]] = []
    for i, cell in enumerate(column.to_pylist()):
        if cell is None:
            continue
        word = str(cell).strip().lower()
        if word in _TRUE or word in _FALSE:
            flags[i], ok[i] = word in _TRUE, True
        else:
            errors.append(
                (i, ErrorCode.INVALID_READING, f"{signal} takes true or false, got {word[:32]!r}")
            )
    return flags, ok, errors
