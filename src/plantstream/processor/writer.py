"""The CPU half of a commit: rows sorted by (sensor, time), de-duplicated in memory (the first
in stream order wins; a repeat with another value is kept apart as a conflict) and encoded as
binary COPY streams of readings and rollup deltas (``processor/rollups.py``).

A batch of plain doubles is one binary COPY of fixed-width rows, as before value types. A
typed batch is split by shape: doubles and booleans (a bool is stored as 0/1 in ``value``)
stay in that COPY, int64 rows get a second fixed-width one with ``value_int``, rows with a
source quality code a third with ``quality_code``, and text rows (string, state: variable
width) a row-wise COPY of their own; all of them in one transaction.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from plantstream.model import from_epoch_us
from plantstream.model.values import INT_CODE, TEXT_LUT
from plantstream.processor.rollups import StateRow, rollup_buffers, state_deltas
from plantstream.processor.rows import Columns

_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's zero for timestamps
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_MINUTE_US = 60_000_000


def _copy_dtype(*columns: tuple[str, str]) -> np.dtype:
    """A packed big-endian record: field count, then (length, value) per column."""
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for name, kind in columns:
        fields += [(f"{name}_len", ">i4"), (name, kind)]
    return np.dtype(fields)


_READING_ROW = _copy_dtype(
    ("sensor_id", ">i4"), ("ts", ">i8"), ("value", ">f8"), ("quality", ">i2")
)


def copy_buffer(dtype: np.dtype, **columns: npt.ArrayLike) -> bytes:
    """A complete binary COPY stream for the given columns (built without a Python loop)."""
    n = len(next(iter(columns.values())))  # type: ignore[arg-type]
    rows = np.empty(n, dtype=dtype)
    rows["n"] = len(columns)
    for name, values in columns.items():
        rows[f"{name}_len"] = dtype[name].itemsize
        rows[name] = values
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


def sort_and_dedupe(rows: Columns) -> tuple[Columns, int]:
    """Rows sorted by (sensor, time), keeping the first of equal (sensor, time) in stream order.

    Returns the rows kept and how many duplicates were dropped.
    """
    unique, dropped, _ = sort_dedupe_conflicts(rows)
    return unique, dropped


def sort_dedupe_conflicts(rows: Columns) -> tuple[Columns, int, Columns]:
    """``sort_and_dedupe`` plus the dropped repeats whose value differs from the kept one."""
    order = np.lexsort((np.arange(len(rows)), rows.ts_us, rows.sensor_id))
    rows = rows.take(order)
    if len(rows) < 2:
        return rows, 0, Columns.empty()
    repeat = (rows.sensor_id[1:] == rows.sensor_id[:-1]) & (rows.ts_us[1:] == rows.ts_us[:-1])
    if not repeat.any():
        return rows, 0, Columns.empty()
    keep = np.concatenate(([True], ~repeat))
    # each row's kept row: the start of its run of equal (sensor, time)
    first = np.maximum.accumulate(np.where(keep, np.arange(len(rows)), 0))
    differs = ~keep & _differs(rows, first)
    conflicts = rows.take(differs) if differs.any() else Columns.empty()
    return rows.take(keep), int(np.count_nonzero(repeat)), conflicts


def _differs(rows: Columns, first: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
    """Whether each row's value differs from that of row ``first[i]`` (NaN equals NaN)."""
    a, b = rows.value, rows.value[first]
    out: npt.NDArray[np.bool_] = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    if rows.vtype is not None:
        out |= rows.vtype != rows.vtype[first]
    if rows.ivalue is not None:
        out |= rows.ivalue != rows.ivalue[first]
    if rows.text is not None:
        out |= rows.text != rows.text[first]
    return out


@dataclass(frozen=True, slots=True)
class CopyPart:
    """One COPY of readings: its column list and either a binary buffer or rows to write."""

    columns: tuple[str, ...]
    buffer: bytes = b""
    rows: tuple[tuple[object, ...], ...] = ()
    types: tuple[str, ...] = ()  # for ``rows``: the PostgreSQL types of ``columns``


@dataclass(frozen=True, slots=True)
class CopyReady:
    """A batch's rows sorted by (sensor, time), de-duplicated within the batch and encoded
    for COPY: the CPU half of a commit, which the processor does on its prefetch thread while
    the previous batch commits. ``parts`` are the COPYs of the readings (one for plain
    doubles); ``conflicts`` the in-batch repeats with another value."""

    unique: Columns
    readings: bytes  # the first part's buffer (the doubles), kept for callers of one COPY
    rollups: tuple[bytes, bytes, bytes]  # 1-minute, 1-hour and 1-day deltas
    parts: tuple[CopyPart, ...] = ()
    conflicts: Columns | None = None
    states: tuple[list[StateRow], list[StateRow], list[StateRow]] = ([], [], [])


def copy_ready(rows: Columns) -> CopyReady:
    unique, _, conflicts = sort_dedupe_conflicts(rows)
    if not len(unique):
        return CopyReady(unique, b"", (b"", b"", b""), (), conflicts)
    parts = reading_parts(unique)
    first = parts[0].buffer if parts and parts[0].columns == PLAIN_COLUMNS else b""
    return CopyReady(unique, first, rollups_of(unique), parts, conflicts, state_deltas(unique))


def rollups_of(rows: Columns) -> tuple[bytes, bytes, bytes]:
    """The rollup deltas of sorted, unique ``rows`` (``processor/rollups.py``)."""
    return rollup_buffers(rows, rows.kind, rows.wrap)


PLAIN_COLUMNS = ("sensor_id", "ts", "value", "quality")
_INT_ROW = _copy_dtype(
    ("sensor_id", ">i4"), ("ts", ">i8"), ("value", ">f8"), ("value_int", ">i8"), ("quality", ">i2")
)
_CODED_ROW = _copy_dtype(
    ("sensor_id", ">i4"),
    ("ts", ">i8"),
    ("value", ">f8"),
    ("quality", ">i2"),
    ("quality_code", ">i8"),
)
_CODED_INT_ROW = _copy_dtype(
    ("sensor_id", ">i4"),
    ("ts", ">i8"),
    ("value", ">f8"),
    ("value_int", ">i8"),
    ("quality", ">i2"),
    ("quality_code", ">i8"),
)
_TEXT_COLUMNS = ("sensor_id", "ts", "value_text", "quality", "quality_code")
_TEXT_TYPES = ("int4", "timestamptz", "text", "int2", "int8")


def reading_parts(rows: Columns) -> tuple[CopyPart, ...]:
    """The COPYs that store ``rows`` exactly (one binary COPY for plain doubles)."""
    if rows.vtype is None:
        return (CopyPart(PLAIN_COLUMNS, readings_copy_buffer(rows)),)
    vtype = rows.vtype
    coded = rows.qcode >= 0 if rows.qcode is not None else np.zeros(len(rows), dtype=bool)
    text = TEXT_LUT[vtype]
    is_int = vtype == INT_CODE
    parts: list[CopyPart] = []
    plain = ~text & ~is_int & ~coded
    if plain.any():
        parts.append(CopyPart(PLAIN_COLUMNS, readings_copy_buffer(rows.take(plain))))
    for mask, dtype in (
        (is_int & ~coded, _INT_ROW),
        (~text & ~is_int & coded, _CODED_ROW),
        (is_int & coded, _CODED_INT_ROW),
    ):
        if mask.any():
            part = rows.take(mask)
            columns = {
                "sensor_id": part.sensor_id,
                "ts": part.ts_us - _PG_EPOCH_US,
                "value": part.value,
                "value_int": part.ivalue,
                "quality": part.quality,
                "quality_code": part.qcode,
            }
            names = tuple(n for n in dtype.names or () if n != "n" and not n.endswith("_len"))
            parts.append(
                CopyPart(names, copy_buffer(dtype, **{n: columns[n] for n in names}))  # type: ignore[arg-type]
            )
    if text.any():
        part = rows.take(text)
        codes = part.quality_codes()
        parts.append(
            CopyPart(
                _TEXT_COLUMNS,
                rows=tuple(
                    (s, from_epoch_us(t), x, q, c)
                    for s, t, x, q, c in zip(
                        part.sensor_id.tolist(),
                        part.ts_us.tolist(),
                        part.text.tolist() if part.text is not None else [],
                        part.quality.tolist(),
                        codes,
                        strict=True,
                    )
                ),
                types=_TEXT_TYPES,
            )
        )
    return tuple(parts)


def readings_copy_buffer(rows: Columns) -> bytes:
    return copy_buffer(
        _READING_ROW,
        sensor_id=rows.sensor_id,
        ts=rows.ts_us - _PG_EPOCH_US,
        value=rows.value,
        quality=rows.quality,
    )
