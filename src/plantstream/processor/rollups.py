"""Rollup deltas of one batch per 1-minute, 1-hour and 1-day bucket, as binary COPY streams.

Besides count, sum, min, max, sum of squares, first and last (merged by addition, exact for
late data as before), each bucket carries the two sums that plant data needs and that only
consecutive readings give:

- ``area``: the integral of the step function between the bucket's first and last reading
  (a value holds until the next reading), in value x seconds. The time-weighted average of a
  bucket adds the value carried in from the previous bucket before its first reading and its
  own last value after its last (``store/queries.py``).
- ``increase``: a counter's increase between its first and last reading, a drop counted as
  a reset (the new value is the increase since zero) or, for a counter with a ``wrap``
  modulus and a drop of more than half of it, as a wrap.
- ``durations`` (state signals, a delta of its own: ``state_deltas``): the seconds spent in
  each state between the bucket's first and last reading, with its first and last state.

A delta is exact for the rows of the batch; merging it into a stored bucket is exact when it
lies wholly after (or before) what the bucket holds, adding the one joint between them. A
delta that overlaps a stored bucket (late data between stored readings) marks the bucket
dirty; the processor's repair pass recomputes it once, after the commit
(``processor/repair.py``, ``store/rollup_repair.py``).
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import numpy.typing as npt

from plantstream.model import from_epoch_us
from plantstream.model.values import BOOL_CODE, TEXT_CODES
from plantstream.processor.rows import Columns

_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's zero for timestamps
MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
WIDTHS_US = (MINUTE_US, HOUR_US, DAY_US)  # rollup_1m, rollup_1h, rollup_1d
COUNTER = 1  # SignalKind codes in rollup rows: 0 gauge, 1 counter, 2 state


def _copy_dtype(*columns: tuple[str, str]) -> np.dtype:
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for name, kind in columns:
        fields += [(f"{name}_len", ">i4"), (name, kind)]
    return np.dtype(fields)


ROLLUP_ROW = _copy_dtype(
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
    ("area", ">f8"),
    ("increase", ">f8"),
    ("kind", ">i2"),
    ("dirty", "?"),
)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + np.array([0, 0], dtype=">i4").tobytes()
_COPY_TRAILER = np.array([-1], dtype=">i2").tobytes()


def increase(
    before: npt.NDArray[np.float64], after: npt.NDArray[np.float64], wrap: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """A counter's increase from ``before`` to ``after``: a drop is a reset (the counter
    started again at zero), or a wrap when ``wrap`` (0: none) is set and the drop is more
    than half of it. The same rule as the SQL function ``ps_increase`` (migration 0004)."""
    step = after - before
    wrapped = (wrap > 0) & (before - after > wrap / 2)
    return np.where(step >= 0, step, np.where(wrapped, step + wrap, after))


Groups = dict[str, npt.NDArray]  # type: ignore[type-arg]  # one delta's columns, native


def rollup_buffer(
    rows: Columns,
    width_us: int = MINUTE_US,
    kind: npt.NDArray[np.int16] | None = None,
    wrap: npt.NDArray[np.float64] | None = None,
) -> bytes:
    """The delta of sorted, unique ``rows`` per (sensor, bucket of ``width_us``) as a COPY.

    ``kind`` and ``wrap`` are per row (None: every row a gauge without wrap).
    """
    return _pack(_groups(rows, width_us, kind, wrap))


def _groups(
    rows: Columns,
    width_us: int,
    kind: npt.NDArray[np.int16] | None,
    wrap: npt.NDArray[np.float64] | None,
) -> Groups:
    ts, values = rows.ts_us, rows.value
    n = len(rows)
    bucket = ts - ts % width_us
    change = np.empty(n, dtype=bool)
    change[0] = True
    change[1:] = (rows.sensor_id[1:] != rows.sensor_id[:-1]) | (bucket[1:] != bucket[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n) - 1
    # the pair (i, i + 1) inside one group belongs to row i; a group's last row has none
    inside = np.append(~change[1:], False)
    held = np.zeros(n)
    held[:-1] = np.where(inside[:-1], values[:-1] * ((ts[1:] - ts[:-1]) / 1e6), 0.0)
    kinds = np.zeros(n, dtype=np.int16) if kind is None else kind
    wraps = np.zeros(n) if wrap is None else wrap
    grown = np.zeros(n)
    counters = kinds == COUNTER
    if counters.any():
        pair = inside[:-1] & counters[:-1]
        grown[:-1] = np.where(pair, increase(values[:-1], values[1:], wraps[1:]), 0.0)
    return {
        "sensor_id": rows.sensor_id[starts],
        "bucket": bucket[starts],
        "count": ends - starts + 1,
        "sum": np.add.reduceat(values, starts),
        "min": np.minimum.reduceat(values, starts),
        "max": np.maximum.reduceat(values, starts),
        "sum_sq": np.add.reduceat(values * values, starts),
        "first_ts": ts[starts],
        "first": values[starts],
        "last_ts": ts[ends],
        "last": values[ends],
        "area": np.add.reduceat(held, starts),
        "increase": np.add.reduceat(grown, starts),
        "kind": kinds[starts],
        "wrap": wraps[starts],
    }


def _coarser(fine: Groups, width_us: int) -> Groups:
    """The delta per coarser bucket from the finer delta's groups (a few thousand rows, not
    the batch's readings): sums add, and the joint between two consecutive finer groups of a
    bucket (the earlier's last value held until the later's first reading) is added, exactly
    as the pairs of the readings themselves would add it."""
    sensor, first_ts = fine["sensor_id"], fine["first_ts"]
    n = len(sensor)
    bucket = fine["bucket"] - fine["bucket"] % width_us
    change = np.empty(n, dtype=bool)
    change[0] = True
    change[1:] = (sensor[1:] != sensor[:-1]) | (bucket[1:] != bucket[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n) - 1
    joint = ~change[1:]  # group i and i + 1 lie in one coarser bucket
    last, first = fine["last"], fine["first"]
    held = np.zeros(n)
    held[1:] = np.where(joint, last[:-1] * ((first_ts[1:] - fine["last_ts"][:-1]) / 1e6), 0.0)
    grown = np.zeros(n)
    counters = fine["kind"] == COUNTER
    if counters.any():
        pair = joint & counters[1:]
        grown[1:] = np.where(pair, increase(last[:-1], first[1:], fine["wrap"][1:]), 0.0)
    return {
        "sensor_id": sensor[starts],
        "bucket": bucket[starts],
        "count": np.add.reduceat(fine["count"], starts),
        "sum": np.add.reduceat(fine["sum"], starts),
        "min": np.minimum.reduceat(fine["min"], starts),
        "max": np.maximum.reduceat(fine["max"], starts),
        "sum_sq": np.add.reduceat(fine["sum_sq"], starts),
        "first_ts": first_ts[starts],
        "first": first[starts],
        "last_ts": fine["last_ts"][ends],
        "last": last[ends],
        "area": np.add.reduceat(fine["area"] + held, starts),
        "increase": np.add.reduceat(fine["increase"] + grown, starts),
        "kind": fine["kind"][starts],
        "wrap": fine["wrap"][starts],
    }


_PG_TIME = ("bucket", "first_ts", "last_ts")


def _pack(groups: Groups) -> bytes:
    out = np.empty(len(groups["sensor_id"]), dtype=ROLLUP_ROW)
    out["n"] = len(ROLLUP_ROW.names or ()) // 2  # (length, value) per column after "n"
    for name in ROLLUP_ROW.names or ():
        if name == "n" or name.endswith("_len"):
            continue
        out[f"{name}_len"] = ROLLUP_ROW[name].itemsize
        if name == "dirty":
            out[name] = False
        elif name in _PG_TIME:
            out[name] = groups[name] - _PG_EPOCH_US
        else:
            out[name] = groups[name]
    return _COPY_HEADER + out.tobytes() + _COPY_TRAILER


def rollup_buffers(
    rows: Columns,
    kind: npt.NDArray[np.int16] | None = None,
    wrap: npt.NDArray[np.float64] | None = None,
) -> tuple[bytes, bytes, bytes]:
    """The 1-minute, 1-hour and 1-day deltas of sorted, unique ``rows`` (the coarser two
    from the 1-minute groups)."""
    one_minute = _groups(rows, MINUTE_US, kind, wrap)
    one_hour = _coarser(one_minute, HOUR_US)
    one_day = _coarser(one_hour, DAY_US)
    return _pack(one_minute), _pack(one_hour), _pack(one_day)


STATE = 2
StateRow = tuple[int, datetime, datetime, datetime, str, str, str]


def _label(code: int, value: float, text: object) -> str:
    if code in TEXT_CODES:
        return str(text)
    if code == BOOL_CODE:
        return "true" if value else "false"
    return repr(value)


def state_deltas(rows: Columns) -> tuple[list[StateRow], list[StateRow], list[StateRow]]:
    """Per width, the time-in-state delta of each (state sensor, bucket) of sorted, unique
    ``rows``: (sensor, bucket, first ts, last ts, durations JSON, first state, last state)."""
    if rows.kind is None or not (rows.kind == STATE).any():
        return [], [], []
    picked = rows.take(rows.kind == STATE)
    codes = picked.vtype.tolist() if picked.vtype is not None else [0] * len(picked)
    texts = picked.text.tolist() if picked.text is not None else [None] * len(picked)
    labels = [_label(c, v, t) for c, v, t in zip(codes, picked.value.tolist(), texts, strict=True)]
    sensors, stamps = picked.sensor_id.tolist(), picked.ts_us.tolist()
    out: list[list[StateRow]] = []
    for width in WIDTHS_US:
        groups: list[StateRow] = []
        i = 0
        while i < len(sensors):
            bucket = stamps[i] - stamps[i] % width
            j = i
            spans: dict[str, float] = {}
            while (
                j + 1 < len(sensors)
                and sensors[j + 1] == sensors[i]
                and stamps[j + 1] - stamps[j + 1] % width == bucket
            ):
                spans[labels[j]] = spans.get(labels[j], 0.0) + (stamps[j + 1] - stamps[j]) / 1e6
                j += 1
            groups.append(
                (
                    sensors[i],
                    from_epoch_us(bucket),
                    from_epoch_us(stamps[i]),
                    from_epoch_us(stamps[j]),
                    json.dumps(spans),
                    labels[i],
                    labels[j],
                )
            )
            i = j + 1
        out.append(groups)
    return out[0], out[1], out[2]
