"""The daily-cycle (seasonal) baseline: a signal with a strong daily cycle is judged against
its hour's usual level, so the cycle no longer widens the spread and a level shift the cycle
would hide is found; a signal without a daily cycle is judged exactly as before."""

from __future__ import annotations

import math
import random

import msgspec
from test_slow_signals import slow_bucket

from plantstream.detect.buckets import Bucket
from plantstream.detect.config import DetectionConfig, Rule, SensorLimits, Tuning, limits_for
from plantstream.detect.detectors import CYCLE_SLOTS, cycle_slot, evaluate
from plantstream.detect.state import SensorState, decode

FIVE_MINUTES = 300_000_000
PER_BUCKET = 5  # 25-minute buckets
PER_DAY = 288  # readings a day
OFF = Tuning(season_days=0)


def bucket_of(values: list[float], first_us: int) -> Bucket:
    return slow_bucket(values, first_us)


def run(readings: list[float], tuning: Tuning) -> tuple[list[list[str]], SensorState]:
    """Kinds found per 25-minute bucket of a 5-minute signal, and the state at the end."""
    state, found = SensorState(), []
    for i in range(0, len(readings) - PER_BUCKET + 1, PER_BUCKET):
        bucket = bucket_of(readings[i : i + PER_BUCKET], i * FIVE_MINUTES)
        findings = evaluate(state, bucket, metric="power", limits=SensorLimits(), tuning=tuning)
        found.append([f.kind for f in findings])
    return found, state


def cyclic(days: float, rng: random.Random, amplitude: float = 10.0) -> list[float]:
    """About 60, a daily cycle of +-``amplitude`` (peak in the afternoon), noise 0.5."""
    return [
        60 + amplitude * math.sin(2 * math.pi * (i / PER_DAY - 0.375)) + rng.gauss(0, 0.5)
        for i in range(int(days * PER_DAY))
    ]


def test_a_strong_daily_cycle_raises_nothing_and_no_longer_widens_the_spread() -> None:
    readings = cyclic(20, random.Random(1))
    found, state = run(readings, Tuning())
    assert [f for f in found if f] == []
    assert state.cycle_on
    assert len(state.cycle) == CYCLE_SLOTS  # bounded: one value an hour
    _, today = run(readings, OFF)
    assert not today.cycle_on
    assert today.cycle == []
    # today the cycle is learned as spread (about 10 / sqrt(2)); with the cycle, the noise
    assert math.sqrt(today.base_var) > 5.0
    assert math.sqrt(state.base_var) < math.sqrt(today.base_var) / 4
    # the learned profile is the cycle: highest in the afternoon, lowest before dawn
    peak = max(range(CYCLE_SLOTS), key=lambda h: state.cycle[h])
    low = min(range(CYCLE_SLOTS), key=lambda h: state.cycle[h])
    assert peak in (14, 15, 16)
    assert low in (2, 3, 4)


def test_a_level_shift_the_cycle_hides_today_is_found_with_the_seasonal_baseline() -> None:
    rng = random.Random(2)
    readings = cyclic(12, rng)
    start = len(readings)
    # three hours at night 12 above the hour's usual level: still below the afternoon's
    # peak, so against the cycle-wide spread (about 7) it is under 2 sigma
    night = cyclic(1, rng)
    shifted = readings + night[: 2 * 12] + [v + 12.0 for v in night[2 * 12 : 5 * 12]]
    shifted += night[5 * 12 :]
    window = range(start // PER_BUCKET, (start + 5 * 12) // PER_BUCKET)
    found, _ = run(shifted, Tuning())
    assert any("level_shift" in found[i] for i in window)
    assert not any(found[: start // PER_BUCKET])  # and nothing before it
    today, _ = run(shifted, OFF)
    assert not any(today[i] for i in window)


def test_a_signal_without_a_daily_cycle_is_judged_exactly_as_before() -> None:
    rng = random.Random(3)
    out, walk = [], 0.0
    for _ in range(20 * PER_DAY):
        walk = 0.98 * walk + rng.gauss(0, 0.6)
        out.append(85 + walk + rng.gauss(0, 0.8))
    for i in range(10 * PER_DAY, 10 * PER_DAY + 48):
        out[i] += 30.0  # a level fault, so there is something to find
    found, state = run(out, Tuning())
    today, before = run(out, OFF)
    assert any(found)
    assert found == today
    assert not state.cycle_on  # learned, but it explains nothing: never used
    assert (state.base, state.base_var, state.fast) == (before.base, before.base_var, before.fast)


def test_a_state_packed_before_the_cycle_existed_still_loads() -> None:
    old = msgspec.msgpack.encode({"n": 40, "base": 61.5, "base_var": 2.0, "active": {}})
    state = decode(old)
    assert state is not None
    assert state.base == 61.5
    assert not state.cycle_on
    assert state.cycle == []
    assert state.cycle_first_us == -1


def test_the_hour_comes_from_the_readings_timestamps() -> None:
    at_14h = 14 * 3_600_000_000 + 7 * 86_400_000_000
    assert cycle_slot(bucket_of([1.0] * 5, at_14h)) == 14
    assert cycle_slot(bucket_of([1.0] * 5, at_14h - 3_600_000_000 * 24 * 3)) == 14


def test_the_seasonal_baseline_can_be_switched_off_per_signal() -> None:
    rule = Rule(metric="power", tuning={"season_days": 0.0})
    limits = limits_for(DetectionConfig(rules=[rule]), "f", "m-1", "power")
    assert limits.tuning == {"season_days": 0.0}
