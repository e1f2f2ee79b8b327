"""Stored readings (sorted by sensor and time) -> per-sensor buckets. Detection works on
buckets so its verdicts do not depend on how the stream happened to batch the readings.

A bucket is a fixed COUNT of one sensor's consecutive readings, chosen from the sensor's own
sampling rate so that a bucket spans about ``bucket_seconds`` (10 readings at 1 Hz, one
reading at one per 5 minutes): not a wall-clock grid, so the same data shifted in time, or
cut into batches differently, gives the same buckets and the same verdicts.
"""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt

KEEP_VALUES = 64


class Bucket(msgspec.Struct, frozen=True, gc=False):
    """Readings of one sensor within one bucket of time. A msgspec struct: built ten times
    faster than a frozen dataclass (a batch builds thousands) and packed the same way, as
    a map by field name, so open buckets in states written before still load."""

    sensor_id: int
    start_us: int
    count: int
    median: float
    mean: float
    var: float  # within the bucket
    min: float
    max: float
    first_ts_us: int
    last_ts_us: int
    first: float
    last: float
    max_ahead_us: int  # how far the readings' clock ran ahead of their arrival, at most
    # the values themselves while few, so a bucket split across batches keeps an exact median
    values: tuple[float, ...] = ()

    def merge(self, other: Bucket) -> Bucket:
        """This bucket with more readings of the same sensor and time (``other`` is later)."""
        count = self.count + other.count
        values: tuple[float, ...] = ()
        if self.values and other.values and count <= KEEP_VALUES:
            values = self.values + other.values
            median = _median(values)  # a few values: sorting in Python beats a numpy call
        else:  # many readings: the count-weighted median of the parts is close enough
            median = (self.median * self.count + other.median * other.count) / count
        mean = (self.mean * self.count + other.mean * other.count) / count
        second = (
            (self.var + self.mean**2) * self.count + (other.var + other.mean**2) * other.count
        ) / count
        return Bucket(
            self.sensor_id,
            self.start_us,
            count,
            median,
            mean,
            max(0.0, second - mean**2),
            min(self.min, other.min),
            max(self.max, other.max),
            self.first_ts_us,
            other.last_ts_us,
            self.first,
            other.last,
            max(self.max_ahead_us, other.max_ahead_us),
            values,
        )


def _median(values: tuple[float, ...]) -> float:
    ordered = sorted(values)
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


def per_bucket(first_gap_us: float, bucket_us: int, min_readings: int = 1) -> int:
    """Readings per bucket for a sensor whose readings come ``first_gap_us`` apart: about
    ``bucket_us`` of them, but never fewer than ``min_readings`` (a slow signal's bucket
    spans longer, so its median is robust and a spike or a flat run can show in it)."""
    floor = max(1, min(KEEP_VALUES, min_readings))
    if first_gap_us <= 0:
        return floor
    return max(floor, min(KEEP_VALUES, round(bucket_us / first_gap_us)))


def bucket_of(
    sensor_id: int,
    ts_us: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    received_us: npt.NDArray[np.int64],
) -> Bucket:
    """One bucket of a sensor's consecutive readings (at least one)."""
    n = len(value)
    if n == 1:
        v, t = float(value[0]), int(ts_us[0])
        return Bucket(sensor_id, t, 1, v, v, 0.0, v, v, t, t, v, v, t - int(received_us[0]), (v,))
    values = value.tolist()
    mean = float(value.mean())
    return Bucket(
        sensor_id,
        int(ts_us[0]),
        n,
        float(np.median(value)),
        mean,
        max(0.0, float((value * value).mean()) - mean * mean),
        min(values),
        max(values),
        int(ts_us[0]),
        int(ts_us[-1]),
        values[0],
        values[-1],
        int((ts_us - received_us).max()),
        tuple(values) if n <= KEEP_VALUES else (),
    )


def bucket_from_lists(
    sensor_id: int, ts_us: list[int], value: list[float], ahead_us: int
) -> Bucket:
    """``bucket_of`` for readings already in Python lists (a few at a time: no numpy)."""
    n = len(value)
    if n == 1:
        v, t = value[0], ts_us[0]
        return Bucket(sensor_id, t, 1, v, v, 0.0, v, v, t, t, v, v, ahead_us, (v,))
    ordered = sorted(value)
    half = n // 2
    median = ordered[half] if n % 2 else (ordered[half - 1] + ordered[half]) / 2
    # added left to right in a plain loop, as the batch cut adds its columns: ``sum`` of
    # floats compensates its rounding from Python 3.12 on, which would tell the two apart
    total = squares = 0.0
    for v in value:
        total += v
        squares += v * v
    mean = total / n
    second = squares / n
    return Bucket(
        sensor_id,
        ts_us[0],
        n,
        median,
        mean,
        max(0.0, second - mean * mean),
        ordered[0],
        ordered[-1],
        ts_us[0],
        ts_us[-1],
        value[0],
        value[-1],
        ahead_us,
        tuple(value) if n <= KEEP_VALUES else (),
    )


def cut_buckets(
    sensor_ids: list[int],
    starts: npt.NDArray[np.int64],
    sizes: npt.NDArray[np.int64],
    *,
    ts_us: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    ahead_us: npt.NDArray[np.int64],
) -> list[Bucket]:
    """Buckets of the runs ``[starts[i], starts[i] + sizes[i])`` of rows (each of one sensor,
    ``sensor_ids[i]``; at most ``KEEP_VALUES`` readings; finite values), computed column-wise
    over all of them at once, equal to ``bucket_from_lists`` on each run bit for bit: sums
    are accumulated column by column, left to right, as Python's ``sum`` adds a list."""
    k = len(starts)
    if k == 0:
        return []
    width = int(sizes.max())
    columns = np.arange(width)
    inside = columns < sizes[:, None]
    index = np.where(inside, starts[:, None] + columns, starts[:, None])
    values = value[index]
    padded = np.where(inside, values, 0.0)  # adding 0.0 leaves a sum as it was
    total = np.zeros(k)
    squares = np.zeros(k)
    for j in range(width):
        column = padded[:, j]
        total += column
        squares += column * column
    mean = total / sizes
    spread = squares / sizes - mean * mean
    var = np.where(spread > 0.0, spread, 0.0)  # as max(0.0, x), NaN included
    ordered = np.sort(np.where(inside, values, np.inf), axis=1)
    rows = np.arange(k)
    low = ordered[rows, (sizes - 1) // 2]
    high = ordered[rows, sizes // 2]
    median = np.where(sizes % 2 == 1, high, (low + high) / 2)
    ends = starts + sizes - 1
    ahead = np.where(inside, ahead_us[index], np.iinfo(np.int64).min).max(axis=1)
    first_ts = ts_us[starts].tolist()
    counts = sizes.tolist()
    flat = values.ravel().tolist()  # one list, not one a bucket: fewer objects for the GC
    kept = [
        tuple(flat[at : at + n]) for at, n in zip(range(0, k * width, width), counts, strict=True)
    ]
    return [
        Bucket(sid, t0, n, med, m, v, lo, hi, t0, t1, v0, v1, ahd, kept_values)
        for sid, t0, n, med, m, v, lo, hi, t1, v0, v1, ahd, kept_values in zip(
            sensor_ids,
            first_ts,
            counts,
            median.tolist(),
            mean.tolist(),
            var.tolist(),
            ordered[:, 0].tolist(),
            ordered[rows, sizes - 1].tolist(),
            ts_us[ends].tolist(),
            value[starts].tolist(),
            value[ends].tolist(),
            ahead.tolist(),
            kept,
            strict=True,
        )
    ]


def sensor_slices(sensor_id: npt.NDArray[np.int32]) -> list[tuple[int, int, int]]:
    """(sensor id, start, end) of each sensor's run in rows sorted by sensor."""
    n = len(sensor_id)
    if n == 0:
        return []
    starts = np.flatnonzero(np.concatenate(([True], sensor_id[1:] != sensor_id[:-1])))
    ends = np.append(starts[1:], n)
    return [
        (int(sensor_id[a]), int(a), int(b))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def make_buckets(
    sensor_id: npt.NDArray[np.int32],
    ts_us: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    received_us: npt.NDArray[np.int64],
    *,
    bucket_us: int,
) -> list[Bucket]:
    """Buckets on a fixed time grid of rows sorted by (sensor, time): the grid the engine used
    before count buckets; kept for tools that summarise by time."""
    n = len(sensor_id)
    if n == 0:
        return []
    start = ts_us - ts_us % bucket_us
    change = np.empty(n, dtype=bool)
    change[0] = True
    change[1:] = (sensor_id[1:] != sensor_id[:-1]) | (start[1:] != start[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n)
    counts = ends - starts
    sums = np.add.reduceat(value, starts)
    means = sums / counts
    second = np.add.reduceat(value * value, starts) / counts
    variances = np.maximum(second - means * means, 0.0)
    mins = np.minimum.reduceat(value, starts)
    maxs = np.maximum.reduceat(value, starts)
    ahead = np.maximum.reduceat(ts_us - received_us, starts)
    buckets = []
    for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        part = value[a:b]
        median = float(np.median(part)) if b - a > 2 else float(means[i])
        buckets.append(
            Bucket(
                int(sensor_id[a]),
                int(start[a]),
                int(counts[i]),
                median,
                float(means[i]),
                float(variances[i]),
                float(mins[i]),
                float(maxs[i]),
                int(ts_us[a]),
                int(ts_us[b - 1]),
                float(value[a]),
                float(value[b - 1]),
                int(ahead[i]),
                tuple(part.tolist()) if b - a <= KEEP_VALUES else (),
            )
        )
    return buckets
