"""The built-in streaming detectors, one class each, registered in the order they run on a
sensor's completed bucket; ``evaluate`` runs them and lets the state learn from healthy data."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

from plantstream.detect.buckets import Bucket
from plantstream.detect.config import SensorLimits, Tuning
from plantstream.detect.dropout import allowed_gap_us, overdue_at
from plantstream.detect.registry import Finding, Judged, Registry
from plantstream.detect.state import SensorState, Severity

TREND_METRICS = {"temperature", "vibration_rms"}

# what each detector SEES; a cause (overheating, bearing wear) only where a rule maps it
OBSERVED = {
    "zscore": "level_shift",
    "cusum": "drift",
    "trend": "drift",
    "rate": "rate_of_change",
    "limit": "out_of_limits",
    "spike": "spike",
    "stuck": "stuck_sensor",
    "clock": "clock_skew",
    "missing": "dropout",
}
# detectors whose finding means the level itself is off (the spike detector stands down)
LEVEL_DETECTORS = frozenset({"zscore", "cusum", "trend", "rate", "limit"})
LEVEL_KINDS = frozenset({"level_shift", "drift", "rate_of_change", "out_of_limits"})


def fault_kind(
    detector: str, metric: str, *, rising: bool, causes: Mapping[str, str] | None = None
) -> str:
    """The alert's kind: what was seen (``level_shift``, ``drift``, ``spike``, ...), or the
    cause a rule maps it to, keyed ``<seen>_up`` / ``<seen>_down`` (or ``<seen>``).
    ``causes`` default to the built-in map (rising temperature: overheating, rising
    vibration: bearing wear)."""
    seen = OBSERVED.get(detector, f"{detector}_anomaly")
    key = f"{seen}_{'up' if rising else 'down'}"
    for table in (causes or {}, default_causes(metric)):
        found = table.get(key) or table.get(seen)
        if found:
            return found
    return seen


_BUILT_IN_CAUSES = {
    "temperature": "overheating",
    "vibration_rms": "bearing_wear",
}


def default_causes(metric: str) -> dict[str, str]:
    """The built-in causes of a metric: a rising level of an oven's temperature is
    overheating, of a machine's vibration bearing wear; everything else is named as seen."""
    cause = _BUILT_IN_CAUSES.get(metric)
    if cause is None:
        return {}
    return {f"{seen}_up": cause for seen in LEVEL_KINDS}


def _level_open(state: SensorState) -> bool:
    return bool(state.active) and any(
        a.detector in LEVEL_DETECTORS or k in LEVEL_KINDS or k in _BUILT_IN_CAUSES.values()
        for k, a in state.active.items()
    )


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

    @staticmethod
    def applies(limits: SensorLimits, metric: str) -> bool:
        return any(
            bound is not None
            for bound in (limits.low, limits.high, limits.low_critical, limits.high_critical)
        )

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
                    fault_kind("limit", metric, rising=above, causes=limits.causes),
                    "limit",
                    severity,
                    f"{metric} {extreme:.4g} {'above' if above else 'below'} limit {limit:.4g}",
                    extreme,
                    {"threshold": limit},
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
        expected = state.base + (seasonal(state, judged.bucket) if state.cycle_on else 0.0)
        z = (median - expected) / judged.sd_base
        if abs(z) <= tuning.zscore * tuning.release_ratio:
            return []
        kind = fault_kind("zscore", judged.metric, rising=z > 0, causes=judged.limits.causes)
        # a flat bucket is the stuck-sensor detector's business, and a burst of spikes can
        # drag a median: neither is a level shift
        if abs(z) > tuning.zscore and not judged.flat and "spike" not in state.active:
            return [
                Finding(
                    kind,
                    "zscore",
                    Severity.CRITICAL if abs(z) > 2 * tuning.zscore else Severity.WARNING,
                    f"{judged.metric} level {median:.4g} is {z:+.1f} sigma "
                    f"from its usual {expected:.4g}",
                    median,
                    _evidence(judged, z, tuning.zscore, expected),
                )
            ]
        if kind in state.active:
            judged.holding.add(kind)  # hysteresis: not over while still well off
        return []


class Spike:
    """One or two readings far from the readings on both sides while the median is not: a
    spike goes and comes back. The readings at a bucket's end are judged with the next
    bucket, once its first reading says whether they came back (a step never counts)."""

    name = "spike"

    def check(self, judged: Judged) -> list[Finding]:
        state, bucket = judged.state, judged.bucket
        if not judged.warm or (
            judged.findings and any(f.detector == "zscore" for f in judged.findings)
        ):
            return []
        # while a level fault is open, its start and end look like spikes: they are not
        if _level_open(state):
            return []
        bound = judged.tuning.spike_sigma * judged.sd_raw
        if bucket.values:
            before = state.tail if _follows(state, bucket) else ()
            low, high = bucket.min, bucket.max
            if before:
                low, high = min(low, *before), max(high, *before)
            if high - low <= bound:  # nothing stands apart by more than the bound: no run
                return []
            found = isolated_reading(bucket.values, bound, before=before)
        else:  # more readings than a bucket keeps: its extremes only
            high = (bucket.max - bucket.median) / judged.sd_raw
            low = (bucket.median - bucket.min) / judged.sd_raw
            found = None
            if max(high, low) > judged.tuning.spike_sigma:
                found = bucket.max if high >= low else bucket.min
        if found is None:
            return []
        return [
            Finding(
                "spike",
                "spike",
                Severity.WARNING,
                f"{judged.metric} spike to {found:.4g} (usual {state.base:.4g})",
                found,
            )
        ]


SPIKE_READINGS = 2  # a spike is at most this many readings in a row that go and come back


def _follows(state: SensorState, bucket: Bucket) -> bool:
    """The bucket's first reading is the one after the last bucket's last, with no silence
    between (more than three usual gaps): only then are they neighbours."""
    if not state.tail or state.last_ts_us < 0 or state.interval_us <= 0:
        return False
    return bucket.first_ts_us - state.last_ts_us <= 3 * state.interval_us


def isolated_reading(
    values: tuple[float, ...], bound: float, *, before: tuple[float, ...] = ()
) -> float | None:
    """The most extreme reading of a run of at most ``SPIKE_READINGS`` readings (of these,
    in time order) that stands apart by more than ``bound`` from the readings on both sides
    of it: a spike goes and comes back. ``before`` are the readings just before these (the
    last bucket's tail): they give the first readings a left side, and a run among them whose
    right side is here is judged now (it had none before). A run at the end of ``values``
    waits for the next readings; a ramp or a step never counts. None if no run is isolated."""
    seq = (*before, *values)
    best, height = None, bound
    for width in range(1, SPIKE_READINGS + 1):
        # runs whose right neighbour is one of ``values``: the others were judged before
        for i in range(max(1, len(before) - width), len(seq) - width):
            run = seq[i : i + width]
            left, right = seq[i - 1], seq[i + width]
            rise = min(run) - max(left, right)
            fall = min(left, right) - max(run)
            if rise > height:
                best, height = max(run), rise
            if fall > height:
                best, height = min(run), fall
    return best


class Trend:
    """A fast average rising away from the slow one, bucket after bucket."""

    name = "trend"

    @staticmethod
    def applies(limits: SensorLimits, metric: str) -> bool:
        return metric in TREND_METRICS

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
                    fault_kind("trend", metric, rising=True, causes=judged.limits.causes),
                    "trend",
                    Severity.WARNING,
                    f"{metric} trending up: {state.fast:.4g} against a usual {state.base:.4g}",
                    state.fast,
                    _evidence(
                        judged, (state.fast - state.base) / judged.sd_base, tuning.trend_sigma
                    ),
                )
            ]
        return []


class RateOfChange:
    """The median moving faster than the sensor's ``max_rate_per_s``."""

    name = "rate"

    @staticmethod
    def applies(limits: SensorLimits, metric: str) -> bool:
        return limits.max_rate_per_s is not None

    def check(self, judged: Judged) -> list[Finding]:
        state, bucket, limit = judged.state, judged.bucket, judged.limits.max_rate_per_s
        if limit is None or math.isnan(state.prev_median) or bucket.start_us <= state.prev_us:
            return []
        rate = (bucket.median - state.prev_median) / ((bucket.start_us - state.prev_us) / 1e6)
        if abs(rate) > limit:
            return [
                Finding(
                    fault_kind("rate", judged.metric, rising=rate > 0, causes=judged.limits.causes),
                    "rate",
                    Severity.WARNING,
                    f"{judged.metric} changing at {rate:+.3g}/s (limit {limit:g}/s)",
                    rate,
                    {"threshold": limit},
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


class Drift:
    """A slow drift: one-sided CUSUMs of the bucket z-score (each bucket's share capped, so
    one outlier cannot make a drift) pass their bound; finds what a level shift is too
    slow to show, before it has moved the baseline. By default each bucket adds its
    sigmas past ``drift_slack`` times the hours it spans, against ``drift_sigma_hours``
    (the same at any sampling rate); a rule's ``drift_h`` sums per bucket instead."""

    name = "cusum"

    def check(self, judged: Judged) -> list[Finding]:
        state, tuning, bucket = judged.state, judged.tuning, judged.bucket
        if tuning.drift_h is not None:  # per bucket: sigmas beyond ``drift_k``, summed
            limit, slack, weight = tuning.drift_h, tuning.drift_k, 1.0
        elif tuning.drift_sigma_hours is not None:  # in time: the same at any sampling rate
            limit, slack = tuning.drift_sigma_hours, tuning.drift_slack
            weight = bucket_hours(bucket, state)
        else:
            return []
        if not judged.warm or judged.flat:
            return []
        cap = tuning.zscore
        expected = state.base + (seasonal(state, bucket) if state.cycle_on else 0.0)
        z = max(-cap, min(cap, (bucket.median - expected) / judged.sd_base))
        state.cusum_hi = max(0.0, state.cusum_hi + (z - slack) * weight)
        state.cusum_lo = max(0.0, state.cusum_lo + (-z - slack) * weight)
        rising = state.cusum_hi >= state.cusum_lo
        stat = max(state.cusum_hi, state.cusum_lo)
        if stat <= limit * tuning.release_ratio:
            return []
        # a level shift seen this bucket is the same fault, seen more directly
        if any(f.detector in LEVEL_DETECTORS for f in judged.findings):
            return []
        kind = fault_kind("cusum", judged.metric, rising=rising, causes=judged.limits.causes)
        if stat > limit:
            return [
                Finding(
                    kind,
                    "cusum",
                    Severity.WARNING,
                    f"{judged.metric} drifting {'up' if rising else 'down'}: "
                    f"{judged.bucket.median:.4g} against a usual {expected:.4g}",
                    judged.bucket.median,
                    _evidence(judged, stat, limit, expected),
                )
            ]
        if kind in state.active:
            judged.holding.add(kind)
        return []


MAX_BUCKET_HOURS = 1.0  # one bucket's share of a time-weighted drift sum, at most


def bucket_hours(bucket: Bucket, state: SensorState) -> float:
    """The time one bucket stands for, in hours: its readings' span plus one usual gap (a
    silence before it counts for nothing), at most ``MAX_BUCKET_HOURS``."""
    if bucket.count > 1:
        gap = (bucket.last_ts_us - bucket.first_ts_us) / (bucket.count - 1)
    else:
        gap = state.interval_us
    span_us = (bucket.last_ts_us - bucket.first_ts_us) + gap
    return min(MAX_BUCKET_HOURS, max(0.0, span_us / 3.6e9))


def _evidence(
    judged: Judged, statistic: float, threshold: float, baseline: float | None = None
) -> dict[str, float]:
    """What a person needs to check a level finding: baseline (with the daily cycle's share
    where it is in force), spread, statistic, bound."""
    return {
        "baseline": judged.state.base if baseline is None else baseline,
        "sigma": judged.sd_base,
        "statistic": statistic,
        "threshold": threshold,
    }


# Clock skew, static limits, EWMA z-score of the bucket median (level shift), spikes (single
# readings far from the baseline while the median is not), slow trend (fast vs slow average),
# rate of change, stuck sensor. Missing data is ``dropout.py``'s: silence makes no buckets.
# The order matters: the spike detector stands down when the level-shift one fired, and
# when several name one fault the first names its alert.
DETECTORS = Registry(
    [
        ClockSkew(),
        StaticLimits(),
        LevelShift(),
        Spike(),
        Trend(),
        Drift(),
        RateOfChange(),
        Stuck(),
    ]
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
    holding: set[str] = set()
    findings = registry.judge(
        state, bucket, metric=metric, limits=limits, tuning=tuning, holding=holding
    )
    healthy = not holding and (
        not findings or all(f.detector in ("spike", "clock") for f in findings)
    )
    learn(state, bucket, tuning, healthy=healthy)
    if holding:
        for kind in holding:
            if kind in state.active:
                state.active[kind].quiet = 0
    return findings


CYCLE_SLOTS = 24  # the daily cycle's hours: a fixed, bounded state
MAX_CYCLE_HITS = 1_000_000  # a slot's count of learned hours stops here
_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US


def cycle_slot(bucket: Bucket) -> int:
    """The bucket's hour of day (UTC), from its readings' timestamps (never the wall clock)."""
    return int(((bucket.first_ts_us + bucket.last_ts_us) // 2 // _HOUR_US) % CYCLE_SLOTS)


def seasonal(state: SensorState, bucket: Bucket) -> float:
    """What the daily cycle adds to the baseline at this bucket's hour: the hour's learned
    deviation less the day's mean; 0 unless the cycle is in force (``state.cycle_on``)."""
    if not state.cycle_on:
        return 0.0
    cycle = state.cycle
    return cycle[cycle_slot(bucket)] - sum(cycle) / CYCLE_SLOTS


def _learn_cycle(state: SensorState, bucket: Bucket, tuning: Tuning, deviation: float) -> None:
    """Gather a healthy bucket whose median is ``deviation`` from the (deseasonalised)
    baseline into its hour's sum; the hour's mean is learned once the next hour begins
    (a few additions a bucket, the rest once an hour)."""
    hour = (bucket.first_ts_us + bucket.last_ts_us) // 2 // _HOUR_US
    if hour == state.cycle_hour:
        state.cycle_acc += deviation
        state.cycle_acc_n += 1
        return
    if state.cycle_acc_n:
        _fold_hour(state, bucket, tuning)
    state.cycle_hour, state.cycle_acc, state.cycle_acc_n = hour, deviation, 1


def _fold_hour(state: SensorState, bucket: Bucket, tuning: Tuning) -> None:
    """Learn the gathered hour's mean deviation into its slot, and decide whether the cycle
    is in force: after ``season_days`` of data with every hour seen, while the cycle as
    learned *before* each hour (one step ahead, out of sample) removes at least
    ``season_explained`` of the variance of the hours' deviations. Without a cycle the slots
    hold noise and taking noise off adds variance, so it is not passed by chance; a cycle that
    fades drops out again and the spread widens back."""
    if not state.cycle:
        state.cycle = [0.0] * CYCLE_SLOTS
        state.cycle_hits = [0] * CYCLE_SLOTS
        state.cycle_first_us = state.cycle_hour * _HOUR_US
    cycle, hits = state.cycle, state.cycle_hits
    slot = state.cycle_hour % CYCLE_SLOTS
    deviation = state.cycle_acc / state.cycle_acc_n
    seen = hits[slot]
    residual = deviation - (cycle[slot] - sum(cycle) / CYCLE_SLOTS) if seen else deviation
    # the variances over days (a running mean at first); the hour's value over its own
    # days: a slot sees one hour a day, so its half-life of one hour a day is that many days
    half_life = tuning.season_half_life_days
    weight = max(1.0 - 0.5 ** (1.0 / (24.0 * half_life)), 1.0 / (sum(hits) + 1))
    state.cycle_var_raw += weight * (deviation * deviation - state.cycle_var_raw)
    state.cycle_var_res += weight * (residual * residual - state.cycle_var_res)
    cycle[slot] += max(1.0 - 0.5 ** (1.0 / half_life), 1.0 / (seen + 1)) * (deviation - cycle[slot])
    hits[slot] = min(seen + 1, MAX_CYCLE_HITS)
    on = (
        bucket.last_ts_us - state.cycle_first_us >= tuning.season_days * _DAY_US
        and state.cycle_var_res <= (1.0 - tuning.season_explained) * state.cycle_var_raw
        and 0 not in hits
    )
    _switch_cycle(state, bucket, on)


def _switch_cycle(state: SensorState, bucket: Bucket, on: bool) -> None:
    """Put the cycle in force or out of it: the fast average moves to the same footing, and
    the spread narrows to what the cycle leaves (or widens back to the raw deviations)."""
    if on == state.cycle_on:
        return
    cycle = state.cycle
    share = cycle[cycle_slot(bucket)] - sum(cycle) / CYCLE_SLOTS
    state.cycle_on = on
    if on:
        state.fast -= share
        state.base_var = min(state.base_var, state.cycle_var_res)
    else:
        state.fast += share
        state.base_var = max(state.base_var, state.cycle_var_raw)


@functools.lru_cache(maxsize=256)
def _alpha(bucket_seconds: float, half_life: float) -> float:
    return float(1.0 - 0.5 ** (bucket_seconds / half_life))


def _robust_start(state: SensorState) -> None:
    """At the end of warm-up: baseline and spread from the median and MAD of the warm-up
    buckets, so an anomaly inside warm-up does not become the normal."""
    ordered = sorted(state.warm)
    mid = ordered[len(ordered) // 2]
    mad = sorted(abs(v - mid) for v in ordered)[len(ordered) // 2]
    state.base = mid
    if mad > 0:
        state.base_var = min(state.base_var, (1.4826 * mad) ** 2)
    state.warm = []


def learn(state: SensorState, bucket: Bucket, tuning: Tuning, *, healthy: bool) -> None:
    """Move the baselines; a bucket with a level anomaly teaches nothing (the fault would
    otherwise become the new normal)."""
    slow = _alpha(tuning.bucket_seconds, tuning.slow_half_life_s)
    fast = _alpha(tuning.bucket_seconds, tuning.fast_half_life_s)
    median = bucket.median
    if state.n == 0:
        state.base = state.fast = median
        state.raw_var = bucket.var
    season = seasonal(state, bucket) if state.cycle_on else 0.0  # a daily cycle in force
    previous_fast = state.fast
    state.fast += fast * (median - season - state.fast)
    state.rising = state.rising + 1 if state.fast > previous_fast else 0
    if healthy and state.flat < tuning.stuck_buckets:
        # faster learning while warming up, then the slow half-life
        rate = max(slow, 1.0 / (state.n + 1))
        learned = state.n >= tuning.warmup_buckets  # the cycle learns past warm-up only
        cycle_deviation = median - state.base
        deviation = cycle_deviation - season
        state.base += rate * deviation
        square = deviation * deviation
        if state.n >= tuning.warmup_buckets and state.base_var > 0:
            # bounded adaptation: one bucket widens the spread by at most ``huber`` sigmas'
            # worth, so a slow excursion cannot teach a wide sigma before it is caught
            square = min(square, tuning.huber * tuning.huber * state.base_var)
        state.base_var = (1 - rate) * (state.base_var + rate * square)
        if bucket.count > 1:
            state.raw_var += rate * (bucket.var - state.raw_var)
        state.n += 1
        if state.n <= tuning.warmup_buckets:
            state.warm.append(median)
            if state.n == tuning.warmup_buckets:
                _robust_start(state)
        if tuning.season_days <= 0:
            if state.cycle_on:  # switched off by a rule
                _switch_cycle(state, bucket, False)
        elif learned:
            _learn_cycle(state, bucket, tuning, cycle_deviation)
    if bucket.count > 1:
        gap = (bucket.last_ts_us - bucket.first_ts_us) / (bucket.count - 1)
        state.interval_us = gap if state.interval_us == 0 else (0.9 * state.interval_us + 0.1 * gap)
    elif state.last_ts_us > 0:
        gap = bucket.first_ts_us - state.last_ts_us
        state.interval_us = gap if state.interval_us == 0 else (0.9 * state.interval_us + 0.1 * gap)
    state.prev_median = median
    state.tail = bucket.values[-SPIKE_READINGS - 1 :] if bucket.values else (bucket.last,)
    state.prev_us = bucket.start_us
    state.last_ts_us = max(state.last_ts_us, bucket.last_ts_us)
    state.last_bucket_us = bucket.start_us


__all__ = [
    "DETECTORS",
    "LEVEL_DETECTORS",
    "LEVEL_KINDS",
    "OBSERVED",
    "TREND_METRICS",
    "ClockSkew",
    "Drift",
    "Finding",
    "LevelShift",
    "RateOfChange",
    "SensorState",
    "Spike",
    "StaticLimits",
    "Stuck",
    "Trend",
    "allowed_gap_us",
    "cycle_slot",
    "default_causes",
    "evaluate",
    "fault_kind",
    "learn",
    "overdue_at",
    "seasonal",
]
