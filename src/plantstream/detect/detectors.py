"""The streaming detectors, per sensor, on completed time buckets.

Pure logic: a ``SensorState`` goes in with a bucket, findings come out, the state moves on.
The state is small and serialisable so it can live in Redis and follow a shard to another
processor.

Detectors: static limits, EWMA z-score of the bucket median (level shift), spikes (single
readings far from the baseline while the median is not), rate of change, slow trend (fast
vs slow average, for temperature and vibration), stuck sensor, clock skew. Missing data is
judged by ``missing_since`` from the outside, since silence produces no buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec

from plantstream.detect.buckets import Bucket
from plantstream.detect.config import SensorLimits, Tuning

TREND_METRICS = {"temperature", "vibration_rms"}


class SensorState(msgspec.Struct, kw_only=True):
    """What the detectors remember about one sensor."""

    last_bucket_us: int = -1
    n: int = 0  # buckets seen while healthy
    base: float = 0.0  # slow EWMA of bucket medians
    base_var: float = 0.0  # EW variance of medians around it
    raw_var: float = 0.0  # EW of within-bucket variance (reading-level noise)
    fast: float = 0.0
    rising: int = 0
    prev_median: float = math.nan
    prev_us: int = -1
    flat: int = 0
    interval_us: float = 0.0  # EW of the usual gap between readings
    last_ts_us: int = -1
    ahead_us: int = 0  # how far its clock ran ahead of arrival, last time
    seen_us: int = -1  # the newest reading seen, complete bucket or not
    # open conditions by kind: [detector, severity, normal buckets in a row, peak]
    active: dict[str, list[object]] = {}
    open_bucket: Bucket | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """A detector's verdict on one bucket: a condition of ``kind`` is present (or not)."""

    kind: str  # what the fault looks like: overheating, bearing_wear, spike, stuck_sensor, ...
    detector: str
    severity: str
    message: str
    value: float


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


def _alpha(bucket_seconds: float, half_life: float) -> float:
    return float(1.0 - 0.5 ** (bucket_seconds / half_life))


def evaluate(
    state: SensorState, bucket: Bucket, *, metric: str, limits: SensorLimits, tuning: Tuning
) -> list[Finding]:
    """Findings for one completed bucket; updates ``state`` (learning only from healthy data)."""
    findings: list[Finding] = []
    disabled = limits.disabled
    warm = state.n >= tuning.warmup_buckets
    sd_base = math.sqrt(state.base_var) if state.base_var > 0 else 0.0
    sd_raw = math.sqrt(state.raw_var) if state.raw_var > 0 else 0.0
    # floors keep a perfectly quiet signal from making every wobble an anomaly
    floor = 1e-6 + abs(state.base) * 1e-4
    # a bucket median cannot be steadier than its own sampling noise allows
    sampling = math.sqrt(state.raw_var * 1.57 / bucket.count) if bucket.count else 0.0
    sd_base, sd_raw = max(sd_base, sampling, floor), max(sd_raw, floor)
    median = bucket.median

    if "clock" not in disabled and bucket.max_ahead_us > tuning.clock_skew_seconds * 1e6:
        ahead = bucket.max_ahead_us / 1e6
        findings.append(
            Finding(
                "clock_skew",
                "clock",
                "warning",
                f"timestamps run {ahead:.0f} s ahead of arrival",
                ahead,
            )
        )

    if "limit" not in disabled:
        for bound, crit, above in (
            (limits.high, limits.high_critical, True),
            (limits.low, limits.low_critical, False),
        ):
            extreme = bucket.max if above else bucket.min
            if bound is None and crit is None:
                continue
            if crit is not None and (extreme > crit if above else extreme < crit):
                severity, limit = "critical", crit
            elif bound is not None and (extreme > bound if above else extreme < bound):
                severity, limit = "warning", bound
            else:
                continue
            findings.append(
                Finding(
                    fault_kind("limit", metric, rising=above),
                    "limit",
                    severity,
                    f"{metric} {extreme:.4g} {'above' if above else 'below'} limit {limit:.4g}",
                    extreme,
                )
            )

    shifted = False
    flat = bucket.max == bucket.min and (bucket.count >= 2 or bucket.min == state.prev_median)
    if warm:
        z = (median - state.base) / sd_base
        # a flat bucket is the stuck-sensor detector's business, and a burst of spikes can
        # drag a median: neither is a level shift
        if (
            "zscore" not in disabled
            and abs(z) > tuning.zscore
            and not flat
            and "spike" not in state.active
        ):
            shifted = True
            findings.append(
                Finding(
                    fault_kind("zscore", metric, rising=z > 0),
                    "zscore",
                    "critical" if abs(z) > 2 * tuning.zscore else "warning",
                    f"{metric} level {median:.4g} is {z:+.1f} sigma "
                    f"from its usual {state.base:.4g}",
                    median,
                )
            )
        high = (bucket.max - median) / sd_raw
        low = (median - bucket.min) / sd_raw
        # while a level fault is open, its start and end look like spikes: they are not
        level_fault = any(k in state.active for k in ("overheating", "bearing_wear")) or any(
            k.endswith("_anomaly") for k in state.active
        )
        if (
            "spike" not in disabled
            and not shifted
            and not level_fault
            and max(high, low) > tuning.spike_sigma
        ):
            value = bucket.max if high >= low else bucket.min
            findings.append(
                Finding(
                    "spike",
                    "spike",
                    "warning",
                    f"{metric} spike to {value:.4g} (usual {state.base:.4g})",
                    value,
                )
            )
        if (
            "trend" not in disabled
            and metric in TREND_METRICS
            and state.rising >= tuning.trend_buckets
            and (state.fast - state.base) > tuning.trend_sigma * sd_base
        ):
            findings.append(
                Finding(
                    fault_kind("trend", metric, rising=True),
                    "trend",
                    "warning",
                    f"{metric} trending up: {state.fast:.4g} against a usual {state.base:.4g}",
                    state.fast,
                )
            )

    if (
        limits.max_rate_per_s is not None
        and "rate" not in disabled
        and not math.isnan(state.prev_median)
        and bucket.start_us > state.prev_us
    ):
        rate = (median - state.prev_median) / ((bucket.start_us - state.prev_us) / 1e6)
        if abs(rate) > limits.max_rate_per_s:
            findings.append(
                Finding(
                    fault_kind("rate", metric, rising=rate > 0),
                    "rate",
                    "warning",
                    f"{metric} changing at {rate:+.3g}/s (limit {limits.max_rate_per_s:g}/s)",
                    rate,
                )
            )

    state.flat = state.flat + 1 if flat else 0
    if (
        "stuck" not in disabled
        and state.flat >= tuning.stuck_buckets
        and state.raw_var > 0
        and warm
    ):
        findings.append(
            Finding(
                "stuck_sensor",
                "stuck",
                "warning",
                f"{metric} stuck at {bucket.min:.4g}",
                bucket.min,
            )
        )

    _learn(
        state,
        bucket,
        tuning,
        healthy=not findings or all(f.detector in ("spike", "clock") for f in findings),
    )
    return findings


def _learn(state: SensorState, bucket: Bucket, tuning: Tuning, *, healthy: bool) -> None:
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


def allowed_gap_us(state: SensorState, tuning: Tuning) -> int:
    """The longest silence that is still normal for this sensor."""
    return int(max(state.interval_us * tuning.missing_intervals, tuning.missing_min_seconds * 1e6))


def overdue_at(state: SensorState, *, now_us: int, tuning: Tuning) -> int | None:
    """When the sensor became overdue (its silence passed the usual gaps many times over),
    if it is overdue at ``now_us``; else None."""
    if state.seen_us < 0 or state.n < tuning.warmup_buckets:
        return None
    due = state.seen_us + allowed_gap_us(state, tuning)
    return due if now_us > due else None
