"""One sensor's new readings -> its completed buckets, one at a time, so each is judged with
what the detectors knew at that moment (a backlog in one batch is judged as it happened).

A bucket holds ``state.per_bucket`` consecutive readings, fixed from the sensor's first two
readings and re-estimated when its sampling rate changes several-fold; the bucket being
filled stays in the state (``open_bucket``) across batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

from plantstream.detect.buckets import Bucket, bucket_from_lists, per_bucket
from plantstream.detect.state import SensorState


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
) -> Iterator[Bucket]:
    """Completed buckets of these readings (sorted by time); ``before_part`` sees each run of
    new readings before the state learns of them (the dropout rule looks for a silence)."""
    if state.seen_us >= 0 and len(ts_us) and ts_us[0] <= state.seen_us:
        keep = ts_us > state.seen_us  # a replay, or data too late: judged already
        ts_us, value, received_us = ts_us[keep], value[keep], received_us[keep]
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
                _seen(state, part, before_part)
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
        _seen(state, part, before_part)
        bucket = part if current is None else current.merge(part)
        pos = end
        if bucket.count < state.per_bucket:
            state.open_bucket = bucket
            continue
        state.open_bucket = None
        _reestimate(state, bucket, bucket_us, min_readings)
        yield bucket


def _seen(state: SensorState, part: Bucket, before_part: Callable[[Bucket], object] | None) -> None:
    if before_part is not None:
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


__all__ = ["feed"]
