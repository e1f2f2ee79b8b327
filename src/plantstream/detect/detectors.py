"""The built-in streaming detectors, one class each, registered in the order they run on a
sensor's completed bucket; ``evaluate`` runs them and lets the state learn from healthy data."""

from __future__ import annotations

import math

from plantstream.detect.buckets import Bucket
from plantstream.detect.config import SensorLimits, Tuning
from plantstream.detect.dropout import allowed_gap_us, overdue_at
from plantstream.detect.registry import Finding, Judged, Registry
from plantstream.detect.state import SensorState, Severity

TREND_METRICS = {"temperature", "vibration_rms"}
LEVEL_KINDS = ("overheating", "bearing_wear")


def fault_kind(detector: str, metric: str, *, rising: bool) -> str:
    """What a detector's finding points to, so one fault gives one alert."""
    if detector in ("spike", "stuck", "clock"):
        return {"spike": "spike", "stuck": "stuck_sensor", "clock": "clock_skew"}[detector]
    if detector == "missing":
        return "dropout"
    if metric == "temperature" and rising:
        return "overheating"
    if metric == "vibration_rms" and rising:
        return "bearing_wear"
    return f"{detector}_anomaly"


class ClockSkew:
    """Timestamps that run ahead of their arrival."""

    name = "clock"

    def check(self, judged: Judged) -> list[Finding]:
        bucket = judged.bucket
        if bucket.max_ahead_us > judged.tuning.clock_skew_seconds * 1e6:
            ahead = bucket.max_ahead_us / 1e6
            return [
                Finding(
                    "clock_skew",
                    "clock",
                    Severity.WARNING,
                    f"timestamps run {ahead:.0f} s ahead of arrival",
                    ahead,
                )
            ]
        return []


class StaticLimits:
    """Readings above ``high``/``high_critical`` or below ``low``/``low_critical``."""

    name = "limit"

    def check(self, judged: Judged) -> list[Finding]:
        limits, bucket, metric = judged.limits, judged.bucket, judged.metric
        found = []
        for bound, crit, above in (
            (limits.high, limits.high_critical, True),
            (limits.low, limits.low_critical, False),
        ):
            extreme = bucket.max if above else bucket.min
            if bound is None and crit is None:
                continue
            if crit is not None and (extreme > crit if above else extreme < crit):
                severity, limit = Severity.CRITICAL, crit
            elif bound is not None and (extreme > bound if above else extreme < bound):
                severity, limit = Severity.WARNING, bound
            else:
                continue
            found.append(
                Finding(
                    fault_kind("limit", metric, rising=above),
                    "limit",
                    severity,
                    f"{metric} {extreme:.4g} {'above' if above else 'below'} limit {limit:.4g}",
                    extreme,
                )
            )
        return found


class LevelShift:
    """The bucket median many sigmas from the baseline (EWMA z-score)."""

    name = "zscore"

    def check(self, judged: Judged) -> list[Finding]:
        state, tuning, median = judged.state, judged.tuning, judged.bucket.median
        if not judged.warm:
            return []
        z = (median - state.base) / judged.sd_base
        # a flat bucket is the stuck-sensor detector's business, and a burst of spikes can
        # drag a median: neither is a level shift
        if abs(z) > tuning.zscore and not judged.flat and "spike" not in state.active:
            return [
                Finding(
                    fault_kind("zscore", judged.metric, rising=z > 0),
                    "zscore",
                    Severity.CRITICAL if abs(z) > 2 * tuning.zscore else Severity.WARNING,
                    f"{judged.metric} level {median:.4g} is {z:+.1f} sigma "
                    f"from its usual {state.base:.4g}",
                    median,
                )
            ]
        return []


class Spike:
    """Single readings far from the bucket median while the median itself is not."""

    name = "spike"

    def check(self, judged: Judged) -> list[Finding]:
        state, bucket = judged.state, judged.bucket
        if not judged.warm or any(f.detector == "zscore" for f in judged.findings):
            return []
        # while a level fault is open, its start and end look like spikes: they are not
        if any(k in state.active for k in LEVEL_KINDS) or any(
            k.endswith("_anomaly") for k in state.active
        ):
            return []
        high = (bucket.max - bucket.median) / judged.sd_raw
        low = (bucket.median - bucket.min) / judged.sd_raw
        if max(high, low) > judged.tuning.spike_sigma:
            value = bucket.max if high >= low else bucket.min
            return [
                Finding(
                    "spike",
                    "spike",
                    Severity.WARNING,
                    f"{judged.metric} spike to {value:.4g} (usual {state.base:.4g})",
                    value,
                )
            ]
        return []


class Trend:
    """A fast average rising away from the slow one, bucket after bucket."""

    name = "trend"

    def check(self, judged: Judged) -> list[Finding]:
        state, tuning, metric = judged.state, judged.tuning, judged.metric
        if (
            judged.warm
            and metric in TREND_METRICS
            and state.rising >= tuning.trend_buckets
            and (state.fast - state.base) > tuning.trend_sigma * judged.sd_base
        ):
            return [
                Finding(
                    fault_kind("trend", metric, rising=True),
                    "trend",
                    Severity.WARNING,
                    f"{metric} trending up: {state.fast:.4g} against a usual {state.base:.4g}",
                    state.fast,
                )
            ]
        return []


class RateOfChange:
    """The median moving faster than the sensor's ``max_rate_per_s``."""

    name = "rate"

    def check(self, judged: Judged) -> list[Finding]:
        state, bucket, limit = judged.state, judged.bucket, judged.limits.max_rate_per_s
        if limit is None or math.isnan(state.prev_median) or bucket.start_us <= state.prev_us:
            return []
        rate = (bucket.median - state.prev_median) / ((bucket.start_us - state.prev_us) / 1e6)
        if abs(rate) > limit:
            return [
                Finding(
                    fault_kind("rate", judged.metric, rising=rate > 0),
                    "rate",
                    Severity.WARNING,
                    f"{judged.metric} changing at {rate:+.3g}/s (limit {limit:g}/s)",
                    rate,
                )
            ]
        return []


class Stuck:
    """A noisy signal gone flat for several buckets in a row."""

    name = "stuck"

    def check(self, judged: Judged) -> list[Finding]:
        state = judged.state
        if state.flat >= judged.tuning.stuck_buckets and state.raw_var > 0 and judged.warm:
            return [
                Finding(
                    "stuck_sensor",
                    "stuck",
                    Severity.WARNING,
                    f"{judged.metric} stuck at {judged.bucket.min:.4g}",
                    judged.bucket.min,
                )
            ]
        return []


# Clock skew, static limits, EWMA z-score of the bucket median (level shift), spikes (single
# readings far from the baseline while the median is not), slow trend (fast vs slow average),
# rate of change, stuck sensor. Missing data is ``dropout.py``'s: silence makes no buckets.
# The order matters: the spike detector stands down when the level-shift one fired, and
# when several name one fault the first names its alert.
DETECTORS = Registry(
    [ClockSkew(), StaticLimits(), LevelShift(), Spike(), Trend(), RateOfChange(), Stuck()]
)


def evaluate(
    state: SensorState,
    bucket: Bucket,
    *,
    metric: str,
    limits: SensorLimits,
    tuning: Tuning,
    registry: Registry = DETECTORS,
) -> list[Finding]:
    """Findings for one completed bucket; updates ``state`` (learning only from healthy data)."""
    findings = registry.judge(state, bucket, metric=metric, limits=limits, tuning=tuning)
    learn(
        state,
        bucket,
        tuning,
        healthy=not findings or all(f.detector in ("spike", "clock") for f in findings),
    )
    return findings


def _alpha(bucket_seconds: float, half_life: float) -> float:
    return float(1.0 - 0.5 ** (bucket_seconds / half_life))


def learn(state: SensorState, bucket: Bucket, tuning: Tuning, *, healthy: bool) -> None:
    """Move the baselines; a bucket with a level anomaly teaches nothing (the fault would
    otherwise become the new normal)."""
    slow = _alpha(tuning.bucket_seconds, tuning.slow_half_life_s)
    fast = _alpha(tuning.bucket_seconds, tuning.fast_half_life_s)
    median = bucket.median
    if state.n == 0:
        state.base = state.fast = median
        state.raw_var = bucket.var
    previous_fast = state.fast
    state.fast += fast * (median - state.fast)
    state.rising = state.rising + 1 if state.fast > previous_fast else 0
    if healthy and state.flat < tuning.stuck_buckets:
        # faster learning while warming up, then the slow half-life
        rate = max(slow, 1.0 / (state.n + 1))
        deviation = median - state.base
        state.base += rate * deviation
        state.base_var = (1 - rate) * (state.base_var + rate * deviation * deviation)
        if bucket.count > 1:
            state.raw_var += rate * (bucket.var - state.raw_var)
        state.n += 1
    if bucket.count > 1:
        gap = (bucket.last_ts_us - bucket.first_ts_us) / (bucket.count - 1)
        state.interval_us = gap if state.interval_us == 0 else (0.9 * state.interval_us + 0.1 * gap)
    elif state.last_ts_us > 0:
        gap = bucket.first_ts_us - state.last_ts_us
        state.interval_us = gap if state.interval_us == 0 else (0.9 * state.interval_us + 0.1 * gap)
    state.prev_median = median
    state.prev_us = bucket.start_us
    state.last_ts_us = max(state.last_ts_us, bucket.last_ts_us)
    state.last_bucket_us = bucket.start_us


__all__ = [
    "DETECTORS",
    "TREND_METRICS",
    "ClockSkew",
    "Finding",
    "LevelShift",
    "RateOfChange",
    "SensorState",
    "Spike",
    "StaticLimits",
    "Stuck",
    "Trend",
    "allowed_gap_us",
    "evaluate",
    "fault_kind",
    "learn",
    "overdue_at",
]
