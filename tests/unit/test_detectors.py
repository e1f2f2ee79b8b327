"""Each detector fires on the fault it is for and stays quiet on noise and the daily cycle."""

from __future__ import annotations

import math
import random

import msgspec
import pytest
from pydantic import ValidationError
from redis.crc import key_slot

from plantstream.detect.buckets import Bucket
from plantstream.detect.config import DetectionConfig, Rule, SensorLimits, Tuning, limits_for
from plantstream.detect.detectors import (
    DETECTORS,
    SensorState,
    StaticLimits,
    evaluate,
    fault_kind,
    overdue_at,
)
from plantstream.detect.dropout import Silence, silence
from plantstream.detect.registry import Finding, Judged, Registry
from plantstream.detect.state import ActiveAlert, Severity, decode
from plantstream.store.detection_state import clock_key, missing_key, state_key, sweep_key

TUNING = Tuning()
BUCKET_US = 10_000_000


def bucket_of(values: list[float], start_us: int, *, ahead_us: int = 0) -> Bucket:
    n = len(values)
    mean = sum(values) / n
    ordered = sorted(values)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return Bucket(
        0,
        start_us,
        n,
        median,
        mean,
        sum((v - mean) ** 2 for v in values) / n,
        min(values),
        max(values),
        start_us,
        start_us + (n - 1) * 1_000_000,
        values[0],
        values[-1],
        ahead_us,
        tuple(values),
    )


def run(
    series: list[list[float]],
    *,
    metric: str = "temperature",
    limits: SensorLimits | None = None,
    ahead_us: int = 0,
) -> list[list[str]]:
    """Kinds found per bucket for a series of buckets."""
    state = SensorState()
    found = []
    for i, values in enumerate(series):
        findings = evaluate(
            state,
            bucket_of(values, i * BUCKET_US, ahead_us=ahead_us),
            metric=metric,
            limits=limits or SensorLimits(),
            tuning=TUNING,
        )
        found.append([f.kind for f in findings])
    return found


def noisy(level: float, sd: float, rng: random.Random, n: int = 10) -> list[float]:
    return [rng.gauss(level, sd) for _ in range(n)]


def normal_hours(hours: float, rng: random.Random, *, amplitude: float = 6.0) -> list[list[float]]:
    """Oven temperature: 220 degC, noise 0.8, a daily cycle of +-amplitude."""
    buckets = int(hours * 360)
    return [
        noisy(220 + amplitude * math.sin(2 * math.pi * i * 10 / 86400), 0.8, rng)
        for i in range(buckets)
    ]


def test_quiet_on_noise_and_the_daily_cycle() -> None:
    rng = random.Random(1)
    found = run(normal_hours(6, rng, amplitude=10.0))
    assert sum(1 for f in found if f) == 0


def test_overheating_ramp_is_found_within_a_minute_and_named() -> None:
    rng = random.Random(2)
    series = normal_hours(1, rng)
    start = len(series)
    series += [noisy(220 + 0.5 * 10 * i, 0.8, rng) for i in range(1, 30)]  # +0.5 degC/s
    found = run(series)
    first = next(i for i, f in enumerate(found) if f)
    assert first - start <= 6
    assert "overheating" in found[first]
    assert not any(found[:start])


def test_bearing_wear_trend_on_vibration() -> None:
    rng = random.Random(3)
    series = [noisy(2.2, 0.08, rng) for _ in range(400)]
    series += [
        noisy(2.2 * (1 + 0.25 * (math.exp(i * 10 / 180) - 1)), 0.08, rng) for i in range(1, 30)
    ]
    found = run(series, metric="vibration_rms")
    first = next(i for i, f in enumerate(found) if f)
    assert first >= 400
    assert found[first] == ["bearing_wear"]
    assert first - 400 <= 8


def test_spikes_are_spikes_not_level_shifts() -> None:
    rng = random.Random(4)
    series = [noisy(6.0, 0.05, rng) for _ in range(300)]
    spiky = noisy(6.0, 0.05, rng)
    spiky[3] = 10.8
    series.append(spiky)
    found = run(series, metric="pressure")
    assert found[-1] == ["spike"]
    assert not any(found[:-1])


def test_stuck_sensor_after_flat_buckets() -> None:
    rng = random.Random(5)
    series = [noisy(38.0, 0.3, rng) for _ in range(300)] + [[38.123] * 10 for _ in range(6)]
    found = run(series)
    assert not any(found[: 300 + TUNING.stuck_buckets - 1])
    assert "stuck_sensor" in found[300 + TUNING.stuck_buckets - 1]
    assert all(f == ["stuck_sensor"] for f in found[300 + TUNING.stuck_buckets - 1 :])


def test_a_counter_may_stay_flat() -> None:
    config = DetectionConfig()
    limits = limits_for(config, "f", "line-1-cnc-01", "production_count")
    series = [[float(i)] * 10 for i in range(300)] + [[300.0] * 10 for _ in range(10)]
    assert not any(run(series, metric="production_count", limits=limits))


def test_clock_skew_is_reported_on_its_own() -> None:
    rng = random.Random(6)
    found = run([noisy(45, 0.3, rng)], ahead_us=300_000_000)
    assert found == [["clock_skew"]]
    assert run([noisy(45, 0.3, rng)], ahead_us=30_000_000) == [[]]


def test_static_limits_with_severity() -> None:
    limits = SensorLimits(high=230.0, high_critical=250.0)
    state = SensorState()
    warn = evaluate(
        state, bucket_of([231.0] * 3, 0), metric="temperature", limits=limits, tuning=TUNING
    )
    crit = evaluate(
        state, bucket_of([260.0] * 3, BUCKET_US), metric="temperature", limits=limits, tuning=TUNING
    )
    assert [(f.detector, f.severity) for f in warn] == [("limit", "warning")]
    assert [(f.detector, f.severity) for f in crit] == [("limit", "critical")]
    assert crit[0].kind == "overheating"


def test_rate_of_change_limit() -> None:
    rng = random.Random(7)
    series = [noisy(100.0, 0.01, rng) for _ in range(50)] + [noisy(140.0, 0.01, rng)]
    found = run(
        series,
        metric="pressure",
        limits=SensorLimits(max_rate_per_s=1.0, disabled=frozenset({"zscore"})),
    )
    assert found[-1] == ["rate_of_change"]


def test_overdue_after_its_usual_gaps() -> None:
    rng = random.Random(8)
    state = SensorState()
    for i in range(40):
        evaluate(
            state,
            bucket_of(noisy(5.0, 0.1, rng), i * BUCKET_US),
            metric="pressure",
            limits=SensorLimits(),
            tuning=TUNING,
        )
        state.seen_us = state.last_ts_us
    last = state.seen_us
    assert overdue_at(state, now_us=last + 10_000_000, tuning=TUNING) is None
    due = overdue_at(state, now_us=last + 40_000_000, tuning=TUNING)
    assert due == last + 30_000_000


def test_rules_merge_most_specific_last_and_validate() -> None:
    config = DetectionConfig(
        rules=[
            Rule(device="*-oven-*", metric="temperature", high=260.0),
            Rule(
                facility="plant-01",
                device="line-2-oven-04",
                metric="temperature",
                high=240.0,
                disabled=["stuck"],
            ),
            Rule(metric="temperature", low=-10.0),
        ]
    )
    oven = limits_for(config, "plant-01", "line-2-oven-04", "temperature")
    assert (oven.high, oven.low, "stuck" in oven.disabled) == (240.0, -10.0, True)
    other_oven = limits_for(config, "plant-02", "line-2-oven-04", "temperature")
    assert other_oven.high == 260.0
    cnc = limits_for(config, "plant-01", "line-1-cnc-01", "temperature")
    assert cnc.high is None
    with pytest.raises(ValidationError):
        Rule(metric="warp", high=1.0)
    with pytest.raises(ValidationError):
        Rule(low=5.0, high=1.0)
    with pytest.raises(ValidationError):
        Tuning(zscore=-1)


@pytest.mark.parametrize(
    ("detector", "metric", "rising", "kind"),
    [
        ("zscore", "temperature", True, "overheating"),
        ("trend", "vibration_rms", True, "bearing_wear"),
        ("zscore", "temperature", False, "level_shift"),
        ("cusum", "flow_rate", False, "drift"),
        ("spike", "pressure", True, "spike"),
        ("missing", "pressure", False, "dropout"),
        ("stuck", "pressure", False, "stuck_sensor"),
    ],
)
def test_findings_are_named_by_what_the_fault_looks_like(
    detector: str, metric: str, rising: bool, kind: str
) -> None:
    assert fault_kind(detector, metric, rising=rising) == kind


class _Ceiling:
    """A detector as a plugin would add it: one class, then one registration."""

    name = "ceiling"

    def check(self, judged: Judged) -> list[Finding]:
        if judged.bucket.max > 100:
            return [Finding("over_ceiling", self.name, Severity.CRITICAL, "over 100", 100.0)]
        return []


def test_a_registered_detector_runs_after_the_built_in_ones() -> None:
    registry = Registry(DETECTORS)
    registry.register(_Ceiling())
    rng = random.Random(9)
    state = SensorState()
    limits = SensorLimits(high=90.0)
    for i in range(40):
        evaluate(
            state,
            bucket_of(noisy(50.0, 0.5, rng), i * BUCKET_US),
            metric="pressure",
            limits=limits,
            tuning=TUNING,
            registry=registry,
        )
    hot = bucket_of([*noisy(50.0, 0.5, rng, 9), 120.0], 40 * BUCKET_US)
    found = evaluate(
        state.__copy__(), hot, metric="pressure", limits=limits, tuning=TUNING, registry=registry
    )
    assert [f.detector for f in found][-1] == "ceiling"
    assert found[0].kind == "out_of_limits"  # the built-in limit came first
    off = SensorLimits(high=90.0, disabled=frozenset({"ceiling"}))
    quiet = evaluate(state, hot, metric="pressure", limits=off, tuning=TUNING, registry=registry)
    assert "ceiling" not in [f.detector for f in quiet]
    assert [d.name for d in DETECTORS] == [
        "clock",
        "limit",
        "zscore",
        "spike",
        "trend",
        "cusum",
        "rate",
        "stuck",
    ]
    with pytest.raises(ValueError, match="registered already"):
        registry.register(_Ceiling())


class _CountingCeiling(_Ceiling):
    """The ceiling for pressure only: it says so with ``applies``, and counts its calls."""

    name = "pressure_ceiling"

    def __init__(self) -> None:
        self.calls = 0

    @staticmethod
    def applies(limits: SensorLimits, metric: str) -> bool:
        return metric == "pressure"

    def check(self, judged: Judged) -> list[Finding]:
        self.calls += 1
        return super().check(judged)


def test_a_detector_that_does_not_apply_to_a_sensor_is_not_called_for_it() -> None:
    """The registry keeps, per metric and limits, only the checks that can find anything;
    the built-in ones that stand aside (no bounds, no rate limit, a metric without a trend
    watch) give the verdicts they gave when they were called."""
    ceiling = _CountingCeiling()
    registry = Registry(DETECTORS)
    registry.register(ceiling)
    rng = random.Random(4)
    hot = bucket_of([*noisy(50.0, 0.5, rng, 9), 120.0], 40 * BUCKET_US)
    for metric, calls in (("humidity", 0), ("pressure", 41)):
        ceiling.calls = 0
        state = SensorState()
        for i in range(40):
            evaluate(
                state,
                bucket_of(noisy(50.0, 0.5, rng), i * BUCKET_US),
                metric=metric,
                limits=SensorLimits(),
                tuning=TUNING,
                registry=registry,
            )
        found = evaluate(
            state, hot, metric=metric, limits=SensorLimits(), tuning=TUNING, registry=registry
        )
        assert ceiling.calls == calls
        assert ("over_ceiling" in [f.kind for f in found]) is (metric == "pressure")
    assert not StaticLimits.applies(SensorLimits(), "pressure")  # no bounds: nothing to find
    assert StaticLimits.applies(SensorLimits(low_critical=0.0), "pressure")


def test_a_state_written_before_the_typed_alerts_still_loads() -> None:
    """States in Redis from before carry open alerts as plain 4-item lists."""
    packed = msgspec.msgpack.encode(
        {"n": 31, "seen_us": 5, "active": {"overheating": ["zscore", "critical", 2, 7_000_000]}}
    )
    state = decode(packed)
    assert state is not None
    assert state.active["overheating"] == ActiveAlert("zscore", Severity.CRITICAL, 2, 7_000_000)
    assert (state.n, state.seen_us) == (31, 5)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(state))["active"] == {
        "overheating": ["zscore", "critical", 2, 7_000_000]
    }
    assert decode(b"\xc1 not msgpack") is None  # unreadable: learned again, not a stuck hook
    assert decode(msgspec.msgpack.encode({"active": {"spike": ["spike", "loud", 0, 0]}})) is None


@pytest.mark.parametrize("facility", ["plant-01", "f", "line:2.a_b-c"])
def test_a_facilitys_detection_keys_share_one_cluster_slot(facility: str) -> None:
    """Facility ids are 1-64 of A-Z a-z 0-9 _ . : - (no braces): the id is the hash tag."""
    keys = [key(facility) for key in (state_key, missing_key, clock_key, sweep_key)]
    assert {key_slot(key.encode()) for key in keys} == {key_slot(facility.encode())}
    assert len(set(keys)) == 4


def test_the_dropout_rule_waits_for_warmup_and_yields_to_clock_skew_and_rules() -> None:
    rng = random.Random(8)
    state = SensorState()
    for i in range(40):
        evaluate(
            state,
            bucket_of(noisy(5.0, 0.1, rng), i * BUCKET_US),
            metric="pressure",
            limits=SensorLimits(),
            tuning=TUNING,
        )
        state.seen_us = state.last_ts_us
    last = state.seen_us
    found = silence(state, SensorLimits(), now_us=last + 40_000_000, tuning=TUNING)
    assert found == Silence(due_us=last + 30_000_000, silent_s=40.0)
    # judged in true time when the device's clock ran ahead: heard earlier, due earlier
    early = silence(
        state, SensorLimits(), now_us=last + 40_000_000, heard_us=last - 5_000_000, tuning=TUNING
    )
    assert early == Silence(due_us=last + 25_000_000, silent_s=45.0)
    off = SensorLimits(disabled=frozenset({"missing"}))
    assert silence(state, off, now_us=last + 40_000_000, tuning=TUNING) is None
    state.active["clock_skew"] = ActiveAlert("clock", Severity.WARNING)
    assert silence(state, SensorLimits(), now_us=last + 40_000_000, tuning=TUNING) is None
    assert (
        silence(SensorState(n=5, seen_us=last), SensorLimits(), now_us=last * 2, tuning=TUNING)
        is None
    )
