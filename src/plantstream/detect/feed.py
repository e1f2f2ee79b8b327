"""One sensor's new readings -> its completed buckets, one at a time, so each is judged with
what the detectors knew at that moment (a backlog in one batch is judged as it happened).

A bucket holds ``state.per_bucket`` consecutive readings, fixed from the sensor's first two
readings and re-estimated when its sampling rate changes several-fold; the bucket being
filled stays in the state (``open_bucket``) across batches.

At batch speed (``cut_batch``): the complete buckets of every sensor of a batch are cut and
summarised column-wise in one go (numpy), assuming each sensor's bucket size holds; ``feed``
then walks them one by one as before, and goes back to cutting in Python for the rest of a
sensor whose rate changed. The verdicts are the same either way, bucket for bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from plantstream.detect.buckets import (
    KEEP_VALUES,
    Bucket,
    bucket_from_lists,
    cut_buckets,
    per_bucket,
)
from plantstream.detect.state import SensorState


class Cut(NamedTuple):
    """A sensor's complete buckets of a batch, cut column-wise, and the first of them whose
    spacing may change its bucket size (``len(buckets)`` if none)."""

    buckets: list[Bucket]
    resize_from: int


def cut_batch(
    states: Mapping[int, SensorState],
    slices: Sequence[tuple[int, int, int]],
    ts_us: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    received_us: npt.NDArray[np.int64],
    *,
    bucket_us: int,
    min_readings: int = 1,
) -> dict[int, Cut]:
    """Per sensor of the batch (``slices``: sensor id, start, end in rows sorted by sensor and
    time), the complete buckets that follow the one it has open, cut column-wise with the
    bucket size it has (or, new, takes from its first two readings, as ``feed`` does):
    ``feed``'s ``full``. Sensors with none are absent; so is every sensor if a value is not
    finite (then Python cuts them all)."""
    if not len(ts_us) or not bool(np.isfinite(value).all()):
        return {}
    firsts = ts_us[[a for _, a, _ in slices]].tolist()
    ids: list[int] = []
    starts: list[int] = []
    sizes: list[int] = []
    counts: list[int] = []
    for (sensor_id, a, b), first in zip(slices, firsts, strict=True):
        state = states[sensor_id]
        start = a
        if state.seen_us >= 0 and first <= state.seen_us:  # judged already: as ``feed`` drops
            start += int(np.searchsorted(ts_us[a:b], state.seen_us, side="right"))
        current = state.open_bucket
        size = state.per_bucket
        if size <= 0:  # as ``feed`` sizes a new sensor's buckets
            if current is not None and start < b:
                gap = int(ts_us[start]) - current.last_ts_us
            elif current is None and b - start >= 2:
                gap = int(ts_us[start + 1] - ts_us[start])
            else:
                continue
            size = per_bucket(float(gap), bucket_us, min_readings)
        if current is not None:
            if current.count >= size:
                continue
            start += size - current.count  # ``feed`` completes the open bucket in Python
        count = (b - start) // size
        if count > 0:
            ids.append(sensor_id)
            starts.append(start)
            sizes.append(size)
            counts.append(count)
    if not ids:
        return {}
    repeat = np.array(counts)
    size_of = np.repeat(np.array(sizes, dtype=np.int64), repeat)
    nth = np.arange(int(repeat.sum())) - np.repeat(np.cumsum(repeat) - repeat, repeat)  # i-th
    bucket_starts = np.repeat(np.array(starts, dtype=np.int64), repeat) + nth * size_of
    owners = np.repeat(np.array(ids), repeat).tolist()
    buckets = cut_buckets(
        owners, bucket_starts, size_of, ts_us=ts_us, value=value, ahead_us=ts_us - received_us
    )
    # where ``_reestimate`` would change a bucket size (a bucket of one reading is judged
    # against the reading before, so those are always asked)
    ends = bucket_starts + size_of - 1
    several = size_of > 1
    gap = (ts_us[ends] - ts_us[bucket_starts]) / np.where(several, size_of - 1, 1)
    wanted = np.maximum(
        max(1, min(KEEP_VALUES, min_readings)),
        np.minimum(KEEP_VALUES, np.round(bucket_us / np.where(gap > 0, gap, 1.0))),
    )
    wanted = np.where(gap > 0, wanted, max(1, min(KEEP_VALUES, min_readings)))
    resize = ~several | (wanted > 2 * size_of) | (2 * wanted < size_of)
    firsts_at = np.cumsum(repeat) - repeat
    position = np.where(resize, nth, np.iinfo(np.int64).max)
    resize_from = np.minimum(np.minimum.reduceat(position, firsts_at), repeat).tolist()
    out: dict[int, Cut] = {}
    for sensor_id, at, count, first_resize in zip(
        ids, firsts_at.tolist(), counts, resize_from, strict=True
    ):
        out[sensor_id] = Cut(buckets[at : at + count], first_resize)
    return out


def feed(
    state: SensorState,
    sensor_id: int,
    ts_us: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    received_us: npt.NDArray[np.int64],
    *,
    bucket_us: int,
    min_readings: int = 1,
    before_part: Callable[[Bucket], object] | None = None,
    silence_us: int | None = None,
    full: Cut | None = None,
) -> Iterator[Bucket]:
    """Completed buckets of these readings (sorted by time); ``before_part`` sees each run of
    new readings before the state learns of them (the dropout rule looks for a silence),
    only those after a silence longer than ``silence_us`` if it is given. ``full``: this
    sensor's ``cut_batch`` buckets, taken instead of cutting them again."""
    if state.seen_us >= 0 and len(ts_us) and ts_us[0] <= state.seen_us:
        keep = ts_us > state.seen_us  # a replay, or data too late: judged already
        ts_us, value, received_us = ts_us[keep], value[keep], received_us[keep]
    if full is not None and full.buckets:
        yield from _walk(
            state,
            full,
            sensor_id=sensor_id,
            ts_us=ts_us,
            value=value,
            received_us=received_us,
            bucket_us=bucket_us,
            min_readings=min_readings,
            before_part=before_part,
            silence_us=silence_us,
        )
        return
    # a few readings a bucket: plain Python lists beat numpy calls on tiny arrays
    times: list[int] = ts_us.tolist()
    values: list[float] = value.tolist()
    ahead: list[int] = (ts_us - received_us).tolist()
    pos, n = 0, len(times)
    while pos < n:
        current = state.open_bucket
        if state.per_bucket == 0:
            if current is None and n - pos < 2:
                part = bucket_from_lists(sensor_id, times[pos:], values[pos:], max(ahead[pos:]))
                _seen(state, part, before_part, silence_us)
                state.open_bucket = part
                return
            gap = times[pos] - current.last_ts_us if current else times[pos + 1] - times[pos]
            state.per_bucket = per_bucket(float(gap), bucket_us, min_readings)
        have = current.count if current is not None else 0
        if current is not None and have >= state.per_bucket:
            state.open_bucket = None
            yield current
            continue
        end = pos + min(state.per_bucket - have, n - pos)
        part = bucket_from_lists(sensor_id, times[pos:end], values[pos:end], max(ahead[pos:end]))
        _seen(state, part, before_part, silence_us)
        bucket = part if current is None else current.merge(part)
        pos = end
        if bucket.count < state.per_bucket:
            state.open_bucket = bucket
            continue
        state.open_bucket = None
        _reestimate(state, bucket, bucket_us, min_readings)
        yield bucket


def _walk(
    state: SensorState,
    full: Cut,
    *,
    sensor_id: int,
    ts_us: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    received_us: npt.NDArray[np.int64],
    bucket_us: int,
    min_readings: int,
    before_part: Callable[[Bucket], object] | None,
    silence_us: int | None,
) -> Iterator[Bucket]:
    """``feed`` over buckets cut already: the open bucket completed in Python, then ``full``
    (each ``size`` readings) one by one, the rest left open; if the bucket size changes on
    the way, the remaining readings are cut in Python with the new one."""
    size = full.buckets[0].count
    if state.per_bucket == 0:
        state.per_bucket = size  # as ``feed`` would from the first readings
    pos = 0
    current = state.open_bucket
    if current is not None:
        pos = size - current.count
        part = bucket_of_rows(sensor_id, ts_us, value, received_us, a=0, b=pos)
        _seen(state, part, before_part, silence_us)
        state.open_bucket = None
        bucket = current.merge(part)
        _reestimate(state, bucket, bucket_us, min_readings)
        yield bucket
    for i, bucket in enumerate(full.buckets):
        if state.per_bucket != size:
            break
        _seen(state, bucket, before_part, silence_us)
        if i >= full.resize_from:
            _reestimate(state, bucket, bucket_us, min_readings)
        yield bucket
        pos += size
    if state.per_bucket != size:
        yield from feed(
            state,
            sensor_id,
            ts_us[pos:],
            value[pos:],
            received_us[pos:],
            bucket_us=bucket_us,
            min_readings=min_readings,
            before_part=before_part,
            silence_us=silence_us,
        )
    elif pos < len(ts_us):
        part = bucket_of_rows(sensor_id, ts_us, value, received_us, a=pos, b=len(ts_us))
        _seen(state, part, before_part, silence_us)
        state.open_bucket = part


def bucket_of_rows(
    sensor_id: int,
    ts_us: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    received_us: npt.NDArray[np.int64],
    *,
    a: int,
    b: int,
) -> Bucket:
    """``bucket_from_lists`` of rows ``[a, b)``."""
    times: list[int] = ts_us[a:b].tolist()
    return bucket_from_lists(
        sensor_id, times, value[a:b].tolist(), int((ts_us[a:b] - received_us[a:b]).max())
    )


def _seen(
    state: SensorState,
    part: Bucket,
    before_part: Callable[[Bucket], object] | None,
    silence_us: int | None = None,
) -> None:
    # a silence is judged in true time: from the newest reading's to the part's first
    if before_part is not None and (
        silence_us is None
        or part.first_ts_us - max(0, part.max_ahead_us) - (state.seen_us - state.ahead_us)
        > silence_us
    ):
        before_part(part)
    state.seen_us = max(state.seen_us, part.last_ts_us)
    state.ahead_us = max(0, part.max_ahead_us)


def _reestimate(state: SensorState, bucket: Bucket, bucket_us: int, min_readings: int) -> None:
    """A sensor whose rate changed several-fold gets a new bucket size."""
    if bucket.count > 1:
        gap = (bucket.last_ts_us - bucket.first_ts_us) / (bucket.count - 1)
    elif state.last_ts_us > 0:
        gap = bucket.first_ts_us - state.last_ts_us
    else:
        return
    wanted = per_bucket(gap, bucket_us, min_readings)
    if wanted > 2 * state.per_bucket or 2 * wanted < state.per_bucket:
        state.per_bucket = wanted


__all__ = ["Cut", "bucket_of_rows", "cut_batch", "feed"]
