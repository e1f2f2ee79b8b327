"""Detectors on a slow-sampled signal (one reading every 5 minutes, 5 readings a bucket):
a ramp inside a bucket is no spike, a day-long drop is a drift with the default settings,
and a healthy signal that wanders as a machine's temperature does raises nothing."""

from __future__ import annotations

import math
import random

from plantstream.detect.buckets import Bucket
from plantstream.detect.config import DetectionConfig, Rule, SensorLimits, Tuning, limits_for
from plantstream.detect.detectors import bucket_hours, evaluate, isolated_reading
from plantstream.detect.state import SensorState

FIVE_MINUTES = 300_000_000
PER_BUCKET = 5


def slow_bucket(values: list[float], first_us: int, gap_us: int = FIVE_MINUTES) -> Bucket:
    n = len(values)
    mean = sum(values) / n
    ordered = sorted(values)
    return Bucket(
        0,
        first_us,
        n,
        ordered[n // 2],
        mean,
        sum((v - mean) ** 2 for v in values) / n,
        ordered[0],
        ordered[-1],
        first_us,
        first_us + (n - 1) * gap_us,
        values[0],
        values[-1],
        0,
        tuple(values),
    )


def judge(readings: list[float], tuning: Tuning | None = None) -> list[list[str]]:
    """Kinds found per bucket of a 5-minute signal, cut into buckets of ``PER_BUCKET``."""
    state, found = SensorState(), []
    for i in range(0, len(readings) - PER_BUCKET + 1, PER_BUCKET):
        bucket = slow_bucket(readings[i : i + PER_BUCKET], i * FIVE_MINUTES)
        findings = evaluate(
            state, bucket, metric="power", limits=SensorLimits(), tuning=tuning or Tuning()
        )
        found.append([f.kind for f in findings])
    return found


def wandering(days: float, rng: random.Random) -> list[float]:
    """A machine temperature: about 85, a daily cycle of +-8, a slow random walk of the
    level (pulled back to 85), reading noise 0.8."""
    out, walk = [], 0.0
    for i in range(int(days * 288)):
        walk = 0.98 * walk + rng.gauss(0, 0.6)
        out.append(85 + 8 * math.sin(2 * math.pi * i / 288) + walk + rng.gauss(0, 0.8))
    return out


def test_a_ramp_or_a_step_inside_a_bucket_is_not_a_spike() -> None:
    assert isolated_reading((45.2, 43.9, 44.2, 50.0, 60.1), 8.0) is None  # a ramp begins
    assert isolated_reading((79.4, 82.8, 87.3, 90.4, 91.7), 8.0) is None
    assert isolated_reading((62.0, 62.1, 62.0, 85.0, 85.2), 8.0) is None  # a step
    assert isolated_reading((62.0, 62.1, 91.0, 62.2, 62.0), 8.0) == 91.0  # goes, comes back
    assert isolated_reading((62.0, 62.1, 62.3, 62.2, 30.0), 8.0) is None  # the next one says
    assert isolated_reading((62.0, 62.1, 91.0, 90.0, 62.2), 8.0) == 91.0  # two readings out
    assert isolated_reading((30.0, 62.1, 62.3), 8.0) is None  # a first reading: no left side
    assert isolated_reading((30.0, 62.1, 62.3), 8.0, before=(62.0,)) == 30.0  # given one
    assert isolated_reading((62.1, 62.3), 8.0, before=(62.0, 30.0)) == 30.0  # it came back
    assert isolated_reading((30.1, 30.3), 8.0, before=(62.0, 30.0)) is None  # a step
    assert isolated_reading((62.0, 95.0), 8.0) is None  # too few readings to tell


def test_ramps_of_a_slow_signal_raise_no_spike_but_a_lone_reading_does() -> None:
    rng = random.Random(3)
    readings = [85 + rng.gauss(0, 0.8) for _ in range(400)]
    readings += [85 + 5.0 * i + rng.gauss(0, 0.8) for i in range(5)]  # warming up fast
    readings += [105 + rng.gauss(0, 0.8) for _ in range(45)]
    found = judge(readings)
    assert not any("spike" in f for f in found)
    readings[202] = 140.0  # one wild reading in the middle of a bucket
    found = judge(readings)
    assert [i for i, f in enumerate(found) if "spike" in f] == [202 // PER_BUCKET]


def test_a_step_at_any_offset_is_no_spike_and_a_spike_at_any_offset_is_one() -> None:
    """Wherever a step or a spike falls in a bucket, at its first or last reading too, the
    step raises no spike and the spike (one reading, or two in a row) raises exactly one, in
    its own bucket or, at a bucket's end, in the next one once the signal came back."""
    rng = random.Random(5)
    base = [62 + rng.gauss(0, 0.3) for _ in range(600)]
    for offset in range(PER_BUCKET):
        at = 400 + offset
        step = base[:at] + [v + 25.0 for v in base[at:]]
        assert not any("spike" in f for f in judge(step)), f"step at offset {offset}"
        for width in (1, 2):
            spiky = list(base)
            for i in range(at, at + width):
                spiky[i] = 95.0
            found = [i for i, f in enumerate(judge(spiky)) if "spike" in f]
            last = (at + width - 1) // PER_BUCKET
            assert found in ([last], [last + 1]), f"spike of {width} at offset {offset}"
            if (at + width) % PER_BUCKET:  # the run came back inside its bucket
                assert found == [last]


def test_a_healthy_wandering_slow_signal_raises_nothing() -> None:
    found = judge(wandering(20, random.Random(11)))
    assert [f for f in found if f] == []


def test_a_day_long_drop_of_a_slow_signal_is_a_drift_by_default() -> None:
    rng = random.Random(12)
    normal = wandering(10, rng)
    low = [v - 25.0 for v in wandering(1.5, rng)]  # a day and a half 25 below its usual
    # the daily cycle's baseline off: with it, the drop is a level shift at once
    # (test_seasonal.py); without it, the cycle widens the spread and the drift sum finds it
    found = judge(normal + low, Tuning(season_days=0))
    start = len(normal) // PER_BUCKET
    assert not any(found[:start])
    first = next(i for i, f in enumerate(found) if "drift" in f)
    hours = (first - start) * PER_BUCKET * 5 / 60
    assert 0 < hours < 24
    no_drift = Tuning(drift_sigma_hours=None, season_days=0)
    assert not any("drift" in f for f in judge(normal + low, no_drift))


def test_a_bucket_stands_for_its_own_time_at_any_sampling_rate() -> None:
    state = SensorState()
    assert bucket_hours(slow_bucket([1.0] * 5, 0), state) == 25 / 60
    one_hz = slow_bucket([1.0] * 10, 0, gap_us=1_000_000)
    assert math.isclose(bucket_hours(one_hz, state), 10 / 3600)
    hourly = slow_bucket([1.0] * 5, 0, gap_us=3_600_000_000)
    assert bucket_hours(hourly, state) == 1.0  # one bucket's share of a drift is bounded


def test_the_time_weighted_drift_is_tunable_per_signal() -> None:
    assert Tuning().drift_sigma_hours == 20.0
    rule = Rule(metric="temperature", tuning={"drift_sigma_hours": 8.0, "drift_slack": 0.5})
    limits = limits_for(DetectionConfig(rules=[rule]), "f", "oven-1", "temperature")
    assert limits.tuning == {"drift_sigma_hours": 8.0, "drift_slack": 0.5}
