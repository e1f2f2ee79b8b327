"""The detector contract: a detector looks at one completed bucket of one sensor and names
the faults it sees; detectors run in the order of their registry.

Adding a detector is one class with ``name`` and ``check`` plus one registration (in the
``DETECTORS`` list of ``detectors.py``, or ``Registry.register`` on a registry handed to the
engine). Rules switch a detector off by its name once ``config.DetectorName`` lists it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from plantstream.detect.buckets import Bucket
from plantstream.detect.config import SensorLimits, Tuning
from plantstream.detect.state import SensorState, Severity


@dataclass(frozen=True, slots=True)
class Finding:
    """A detector's verdict on one bucket: a condition of ``kind`` is present."""

    kind: str  # what the fault looks like: overheating, bearing_wear, spike, stuck_sensor, ...
    detector: str
    severity: Severity
    message: str
    value: float
    # what the verdict rests on (baseline, sigma, statistic, threshold): kept with the alert
    evidence: Mapping[str, float] = field(default_factory=dict)


class Judged(msgspec.Struct):
    """One completed bucket under judgement, with what the detectors share about it (a
    msgspec struct: built once per bucket, five times faster than a dataclass)."""

    state: SensorState  # as before this bucket (``flat`` already counts it)
    bucket: Bucket
    metric: str
    limits: SensorLimits
    tuning: Tuning
    warm: bool  # enough healthy buckets seen to trust the statistics
    sd_base: float  # spread of bucket medians around the baseline, floored
    sd_raw: float  # spread of readings within a bucket, floored
    flat: bool  # every reading of the bucket has one value
    findings: list[Finding]  # what the detectors before this one found
    holding: set[str]  # open kinds still clearly present (hysteresis): not over yet


class Detector(Protocol):
    """A detector; ``name`` is the switch a rule's ``disabled`` turns it off with.

    A detector may also have ``applies(limits, metric) -> bool``: False when its check can
    find nothing for a sensor with these limits (no static bounds, no rate limit, a metric
    it does not watch), so it is not called for that sensor's buckets at all. It may look at
    ``limits``' bounds and ``disabled`` and at ``metric`` only (the registry keys on them).
    """

    @property
    def name(self) -> str: ...

    def check(self, judged: Judged) -> Iterable[Finding]: ...


MAX_CHECK_SETS = 4096  # distinct (metric, limits) check lists kept, at most


def _applies(detector: Detector, limits: SensorLimits, metric: str) -> bool:
    applies = getattr(detector, "applies", None)
    return applies is None or bool(applies(limits, metric))


class Registry:
    """Detectors in the order they judge a bucket (a later one sees the earlier findings)."""

    def __init__(self, detectors: Iterable[Detector] = ()) -> None:
        self._detectors: list[Detector] = []
        # the checks that can find anything, per switched-off names, metric and limits (all
        # a detector's ``applies`` may look at): sensors share a few
        self._enabled: dict[tuple[object, ...], tuple[Callable[[Judged], Iterable[Finding]], ...]]
        self._enabled = {}
        for detector in detectors:
            self.register(detector)

    def register(self, detector: Detector) -> Detector:
        if any(d.name == detector.name for d in self._detectors):
            raise ValueError(f"a detector named {detector.name!r} is registered already")
        self._detectors.append(detector)
        self._enabled.clear()
        return detector

    def __iter__(self) -> Iterator[Detector]:
        return iter(self._detectors)

    def judge(
        self,
        state: SensorState,
        bucket: Bucket,
        *,
        metric: str,
        limits: SensorLimits,
        tuning: Tuning,
        holding: set[str] | None = None,
    ) -> list[Finding]:
        """Findings of every enabled detector on one completed bucket (``state`` unchanged
        but for its count of flat buckets and the drift sums); ``holding`` collects the open
        kinds that are below their opening threshold but not yet back to normal."""
        sd_base = math.sqrt(state.base_var) if state.base_var > 0 else 0.0
        sd_raw = math.sqrt(state.raw_var) if state.raw_var > 0 else 0.0
        # floors keep a perfectly quiet signal from making every wobble an anomaly
        floor = 1e-6 + abs(state.base) * 1e-4
        # a bucket median cannot be steadier than its own sampling noise allows
        sampling = math.sqrt(state.raw_var * 1.57 / bucket.count) if bucket.count else 0.0
        flat = bucket.max == bucket.min and (bucket.count >= 2 or bucket.min == state.prev_median)
        findings: list[Finding] = []
        judged = Judged(
            state=state,
            bucket=bucket,
            metric=metric,
            limits=limits,
            tuning=tuning,
            warm=state.n >= tuning.warmup_buckets,
            sd_base=max(sd_base, sampling, floor),
            sd_raw=max(sd_raw, floor),
            flat=flat,
            findings=findings,
            holding=set() if holding is None else holding,
        )
        state.flat = state.flat + 1 if flat else 0
        key = (
            limits.disabled,
            metric,
            limits.low,
            limits.high,
            limits.low_critical,
            limits.high_critical,
            limits.max_rate_per_s,
        )
        checks = self._enabled.get(key)
        if checks is None:
            if len(self._enabled) >= MAX_CHECK_SETS:
                self._enabled.clear()
            checks = self._enabled[key] = tuple(
                d.check
                for d in self._detectors
                if d.name not in limits.disabled and _applies(d, limits, metric)
            )
        for check in checks:
            found = check(judged)
            if found:
                findings.extend(found)
        return findings


__all__ = ["Detector", "Finding", "Judged", "Registry"]
