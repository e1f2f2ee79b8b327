"""The CPU half of a commit: rows sorted by (sensor, time), de-duplicated in memory (the first
in stream order wins) and encoded as binary COPY streams of readings and 1-minute rollups.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
_ROLLUP_ROW = _copy_dtype(
    ("sensor_id", ">i4"),
    ("bucket", ">i8"),
    ("count", ">i8"),
    ("sum", ">f8"),
    ("min", ">f8"),
    ("max", ">f8"),
    ("sum_sq", ">f8"),
    ("first_ts", ">i8"),
    ("first", ">f8"),
    ("last_ts", ">i8"),
    ("last", ">f8"),
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
    order = np.lexsort((np.arange(len(rows)), rows.ts_us, rows.sensor_id))
    rows = rows.take(order)
    if len(rows) < 2:
        return rows, 0
    repeat = (rows.sensor_id[1:] == rows.sensor_id[:-1]) & (rows.ts_us[1:] == rows.ts_us[:-1])
    if not repeat.any():
        return rows, 0
    keep = np.concatenate(([True], ~repeat))
    return rows.take(keep), int(np.count_nonzero(repeat))


def rollup_buffer(rows: Columns) -> bytes:
    """Per (sensor, minute) of sorted rows: count, sum, min, max, sum of squares, first, last."""
    bucket = rows.ts_us - rows.ts_us % _MINUTE_US
    change = np.empty(len(rows), dtype=bool)
    change[0] = True
    change[1:] = (rows.sensor_id[1:] != rows.sensor_id[:-1]) | (bucket[1:] != bucket[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(rows)) - 1
    values = rows.value
    return copy_buffer(
        _ROLLUP_ROW,
        sensor_id=rows.sensor_id[starts],
        bucket=bucket[starts] - _PG_EPOCH_US,
        count=ends - starts + 1,
        sum=np.add.reduceat(values, starts),
        min=np.minimum.reduceat(values, starts),
        max=np.maximum.reduceat(values, starts),
        sum_sq=np.add.reduceat(values * values, starts),
        first_ts=rows.ts_us[starts] - _PG_EPOCH_US,
        first=values[starts],
        last_ts=rows.ts_us[ends] - _PG_EPOCH_US,
        last=values[ends],
    )


@dataclass(frozen=True, slots=True)
class CopyReady:
    """A batch's rows sorted by (sensor, time), de-duplicated within the batch and encoded
    for COPY: the CPU half of a commit, which the processor does on its prefetch thread while
    the previous batch commits."""

    unique: Columns
    readings: bytes
    rollups: bytes


def copy_ready(rows: Columns) -> CopyReady:
    unique, _ = sort_and_dedupe(rows)
    if not len(unique):
        return CopyReady(unique, b"", b"")
    return CopyReady(unique, readings_copy_buffer(unique), rollup_buffer(unique))


def readings_copy_buffer(rows: Columns) -> bytes:
    return copy_buffer(
        _READING_ROW,
        sensor_id=rows.sensor_id,
        ts=rows.ts_us - _PG_EPOCH_US,
        value=rows.value,
        quality=rows.quality,
    )
