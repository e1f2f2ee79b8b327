"""Detection at batch speed: buckets cut column-wise over a whole batch (``cut_batch``) are the
buckets Python cuts one sensor at a time, bit for bit, and give the same verdicts and states,
whatever the batching, the rates, the silences, the clocks and the replays."""

from __future__ import annotations

import numpy as np
import pytest

from plantstream.detect.buckets import Bucket, bucket_from_lists, cut_buckets, sensor_slices
from plantstream.detect.config import SensorLimits, Tuning
from plantstream.detect.detectors import evaluate
from plantstream.detect.dropout import shortest_silence_us
from plantstream.detect.feed import cut_batch, feed
from plantstream.detect.state import SensorState, _encoder

SECOND = 1_000_000
T0 = 1_700_000_000 * SECOND


def _sensor(rng: np.random.Generator, kind: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sensor's readings: rates that change several-fold, silences, a clock that runs
    ahead at times, a level step, flat runs."""
    if kind == 0:  # 1 Hz, then 10 Hz, then one per 20 s
        gaps = np.concatenate(
            [np.full(300, SECOND), np.full(400, SECOND // 10), np.full(60, 20 * SECOND)]
        )
    elif kind == 1:  # 1 Hz with silences of 40 s to 10 min
        gaps = np.full(900, SECOND)
        gaps[rng.choice(900, 6, replace=False)] = rng.integers(40, 600, 6) * SECOND
    elif kind == 2:  # one reading per 5 minutes
        gaps = np.full(200, 300 * SECOND)
    else:  # jittery 2 Hz
        gaps = rng.integers(SECOND // 4, 3 * SECOND // 4, 800)
    ts = T0 + np.cumsum(gaps).astype(np.int64)
    values = rng.normal(50.0, 1.0, len(ts)).round(rng.integers(1, 6))
    values[len(ts) // 2 :] += 12.0  # a level shift
    flat = rng.integers(0, len(ts) - 40)
    values[flat : flat + 40] = values[flat]  # stuck for a while
    ahead = np.where(rng.random(len(ts)) < 0.02, rng.integers(0, 120, len(ts)) * SECOND, 0)
    return ts, values, ts - ahead


def _batches(seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Batches of rows sorted by (sensor, time), cut at random, some repeating rows already
    sent (a replay after a crash)."""
    rng = np.random.default_rng(seed)
    sensors = [_sensor(rng, kind) for kind in (0, 1, 2, 3, 1, 0)]
    cursor = [0] * len(sensors)
    out = []
    while any(c < len(s[0]) for c, s in zip(cursor, sensors, strict=True)):
        parts = []
        for sid, (ts, values, received) in enumerate(sensors):
            start = cursor[sid]
            if start >= len(ts):
                continue
            end = min(len(ts), start + int(rng.integers(0, 90)))
            if rng.random() < 0.1:
                start = max(0, start - int(rng.integers(1, 15)))  # a replay
            cursor[sid] = max(cursor[sid], end)
            n = end - start
            parts.append(
                (np.full(n, sid, np.int32), ts[start:end], values[start:end], received[start:end])
            )
        out.append(tuple(np.concatenate(column) for column in zip(*parts, strict=True)))
    return out  # type: ignore[return-value]


def _run(seed: int, *, column_wise: bool) -> tuple[list[tuple[object, ...]], list[bytes], int]:
    tuning = Tuning()
    bucket_us = int(tuning.bucket_seconds * 1e6)
    silence = shortest_silence_us(tuning)
    limits = SensorLimits(high=64.0, max_rate_per_s=2.0)
    states: dict[int, SensorState] = {}
    seen: list[tuple[object, ...]] = []
    packed: list[bytes] = []
    cut_count = 0
    for sensor_id, ts, values, received in _batches(seed):
        slices = sensor_slices(sensor_id)
        for sid, _, _ in slices:
            states.setdefault(sid, SensorState())
        cuts = (
            cut_batch(
                states,
                slices,
                ts,
                values,
                received,
                bucket_us=bucket_us,
                min_readings=tuning.bucket_min_readings,
            )
            if column_wise
            else {}
        )
        cut_count += sum(len(cut.buckets) for cut in cuts.values())
        for sid, a, b in slices:
            state = states[sid]

            def gap(part: Bucket, state: SensorState = state) -> None:
                silent = part.first_ts_us - max(0, part.max_ahead_us)
                silent -= state.seen_us - state.ahead_us
                if silent > silence:  # the only parts the dropout rule can act on
                    seen.append(("gap", part, state.seen_us, state.ahead_us))

            for bucket in feed(
                state,
                sid,
                ts[a:b],
                values[a:b],
                received[a:b],
                bucket_us=bucket_us,
                min_readings=tuning.bucket_min_readings,
                before_part=gap,
                silence_us=silence if column_wise else None,
                full=cuts.get(sid),
            ):
                found = evaluate(state, bucket, metric="temperature", limits=limits, tuning=tuning)
                seen.append((bucket, [(f.kind, f.severity, f.message) for f in found]))
        packed.append(b"".join(_encoder.encode(states[sid]) for sid in sorted(states)))
    return seen, packed, cut_count


@pytest.mark.parametrize("seed", range(6))
def test_column_wise_cutting_gives_the_same_buckets_verdicts_and_states(seed: int) -> None:
    python, python_states, _ = _run(seed, column_wise=False)
    columns, column_states, cut = _run(seed, column_wise=True)
    buckets = sum(isinstance(item[0], Bucket) for item in python)
    assert buckets > 300
    assert cut > buckets / 2  # most were cut column-wise
    assert any(item[1] for item in python if isinstance(item[0], Bucket))  # something fired
    assert any(item[0] == "gap" for item in python)  # silences were looked at
    assert columns == python
    assert column_states == python_states


def test_cut_buckets_equal_python_buckets_bit_for_bit() -> None:
    rng = np.random.default_rng(11)
    ts = np.cumsum(rng.integers(1, 5 * SECOND, 5000)).astype(np.int64)
    values = rng.normal(0.0, 1e6, 5000) * rng.choice([1e-9, 1.0, 1e9], 5000)
    values[100:140] = -0.0
    ahead = rng.integers(-SECOND, SECOND, 5000)
    sizes = rng.integers(1, 65, 150)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    ids = list(range(150))
    cut = cut_buckets(ids, starts, sizes, ts_us=ts, value=values, ahead_us=ahead)
    expected = [
        bucket_from_lists(
            i, ts[a : a + n].tolist(), values[a : a + n].tolist(), int(ahead[a : a + n].max())
        )
        for i, a, n in zip(ids, starts.tolist(), sizes.tolist(), strict=True)
    ]
    assert cut == expected


def test_a_batch_with_a_value_that_is_not_finite_is_cut_in_python() -> None:
    state = SensorState(per_bucket=10)
    ts = T0 + np.arange(40, dtype=np.int64) * SECOND
    values = np.ones(40)
    values[5] = np.nan
    slices = sensor_slices(np.zeros(40, np.int32))
    assert cut_batch({0: state}, slices, ts, values, ts, bucket_us=10 * SECOND) == {}
    values[5] = 1.0
    cut = cut_batch({0: state}, slices, ts, values, ts, bucket_us=10 * SECOND)
    assert [b.count for b in cut[0].buckets] == [10] * 4
