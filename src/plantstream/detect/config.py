"""Detector settings: defaults, per-metric built-ins, and rules that override them per
facility, machine type (a device pattern such as ``*-oven-*``) or machine.

Settings are validated (pydantic) and versioned in PostgreSQL (``store/detector_config.py``):
every change is a new row with who made it and when; the newest row is in force.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from plantstream.model import METRICS
from plantstream.store import detector_config

# JSON types as declared (``false`` is no limit of 0, ``"5"`` no number), finite numbers only:
# what PostgreSQL's jsonb and the detectors can hold, whether from the API, a file or the database
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
_NO_NUL = r"^[^\x00]*$"

DetectorName = Literal[
    "limit", "zscore", "spike", "rate", "trend", "cusum", "stuck", "missing", "clock"
]
# what a rule's ``causes`` may name: a detector's observation, optionally with a direction
Observation = Literal[
    "level_shift",
    "level_shift_up",
    "level_shift_down",
    "drift",
    "drift_up",
    "drift_down",
    "rate_of_change",
    "rate_of_change_up",
    "rate_of_change_down",
    "out_of_limits",
    "out_of_limits_up",
    "out_of_limits_down",
    "spike",
    "stuck_sensor",
]


class Tuning(BaseModel):
    """How sensitive each detector is; the defaults suit 1-10 Hz plant signals."""

    model_config = _STRICT

    bucket_seconds: float = Field(10.0, gt=0, le=300, description="detection works on buckets")
    bucket_min_readings: int = Field(
        5, ge=1, le=64, description="a slow signal's bucket holds at least this many readings"
    )
    warmup_buckets: int = Field(30, ge=2, description="buckets before statistics are trusted")
    zscore: float = Field(5.0, gt=0, description="bucket mean this many sigmas off: level shift")
    spike_sigma: float = Field(10.0, gt=0, description="one reading this many sigmas off: spike")
    trend_sigma: float = Field(4.0, gt=0, description="fast vs slow average apart by this much")
    trend_buckets: int = Field(3, ge=1, description="consecutive rising buckets to call a trend")
    stuck_buckets: int = Field(4, ge=2, description="flat buckets in a row: stuck sensor")
    missing_intervals: float = Field(6.0, ge=2, description="silence of N usual intervals")
    missing_min_seconds: float = Field(30.0, ge=1)
    device_silence_seconds: float = Field(
        300.0, ge=10, description="a whole device quiet this long (facility clock): dropout"
    )
    clock_skew_seconds: float = Field(60.0, gt=0, description="timestamps ahead of arrival")
    clear_buckets: int = Field(3, ge=1, description="normal buckets in a row to resolve")
    fast_half_life_s: float = Field(30.0, gt=0)
    slow_half_life_s: float = Field(1800.0, gt=0)
    # robust, adaptive detection (issue 17)
    huber: float = Field(6.0, gt=0, description="a bucket teaches at most this many sigmas")
    drift_k: float = Field(2.0, ge=0, description="CUSUM slack, in sigmas per bucket")
    drift_h: float | None = Field(
        None,
        gt=0,
        description="per-bucket CUSUM sum that makes a drift (e.g. 20), in place of the "
        "time-weighted one (drift_sigma_hours); None: the time-weighted sum decides, as the "
        "per-bucket one costs false alarms on signals that wander (docs/detection.md)",
    )
    drift_sigma_hours: float | None = Field(
        20.0,
        gt=0,
        description="time-weighted CUSUM: sigmas beyond drift_slack, times hours, that make "
        "a drift (the same at any sampling rate; 20: one sigma past the slack for 20 hours, "
        "four for 5 hours); used when drift_h is None; None: off",
    )
    drift_slack: float = Field(
        1.0, ge=0, description="time-weighted CUSUM slack, in sigmas (half the shift to find)"
    )
    release_ratio: float = Field(
        0.9, gt=0, lt=1, description="an open alert goes on while above this share of its bound"
    )
    season_days: float = Field(
        3.0,
        ge=0,
        le=60,
        description="days of healthy data before a daily cycle may be taken off the baseline "
        "(docs/detection.md, Seasonality); 0: off",
    )
    season_explained: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="share of the medians' variance around the baseline the daily cycle, "
        "learned beforehand, must explain before it is used",
    )
    season_half_life_days: float = Field(
        7.0, gt=0, le=365, description="the daily cycle's memory, in days"
    )


class Rule(BaseModel):
    """Limits and switches for the sensors it matches; the most specific match wins per field."""

    model_config = _STRICT

    facility: str | None = Field(None, max_length=64, pattern=_NO_NUL)
    device: str = Field(
        "*", max_length=64, pattern=_NO_NUL, description="a glob: machine, or *-type-* for a type"
    )
    metric: str | None = None
    low: float | None = None
    high: float | None = None
    low_critical: float | None = None
    high_critical: float | None = None
    max_rate_per_s: float | None = Field(None, gt=0)
    disabled: list[DetectorName] = Field(default_factory=list)
    causes: dict[Observation, str] = Field(
        default_factory=dict,
        max_length=20,
        description="name what was seen as a cause, e.g. {'drift_down': 'leak'}",
    )
    tuning: dict[str, float] = Field(
        default_factory=dict,
        max_length=20,
        description="per-signal or per-machine-type tuning (zscore, drift_h, ...)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        for cause in self.causes.values():
            if not _CAUSE.match(cause):
                raise ValueError(f"cause {cause[:40]!r}: lowercase letters, digits, _ (<= 40)")
        for name in self.tuning:
            if name not in _TUNABLE:
                raise ValueError(f"tuning {name[:40]!r}: one of {', '.join(sorted(_TUNABLE))}")
        if self.metric is not None and self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError("low must be below high")
        if (
            self.high is not None
            and self.high_critical is not None
            and (self.high_critical < self.high)
        ):
            raise ValueError("high_critical must not be below high")
        if (
            self.low is not None
            and self.low_critical is not None
            and (self.low_critical > self.low)
        ):
            raise ValueError("low_critical must not be above low")
        return self

    def specificity(self) -> int:
        return (
            (4 if self.facility else 0)
            + (
                2
                if "*" not in self.device and "?" not in self.device
                else 1
                if self.device != "*"
                else 0
            )
            + (1 if self.metric else 0)
        )

    def matches(self, facility: str, device: str, metric: str) -> bool:
        return (
            (self.facility is None or self.facility == facility)
            and (self.metric is None or self.metric == metric)
            and fnmatch.fnmatchcase(device, self.device)
        )


_CAUSE = re.compile(r"^[a-z0-9_]{1,40}$")
# the tuning fields a rule may set for its sensors (numbers that matter per signal)
_TUNABLE = frozenset(
    {
        "zscore",
        "spike_sigma",
        "trend_sigma",
        "drift_k",
        "drift_h",
        "drift_sigma_hours",
        "drift_slack",
        "huber",
        "release_ratio",
        "season_days",
    }
)


# signals that may legitimately stay flat (a counter while the line is stopped)
_FLAT_OK = {"production_count"}


class DetectionConfig(BaseModel):
    model_config = _STRICT

    tuning: Tuning = Field(default_factory=Tuning)
    rules: list[Rule] = Field(default_factory=list, max_length=10_000)


class SensorLimits(BaseModel):
    """The settings in force for one sensor, after rules are applied."""

    model_config = ConfigDict(frozen=True)

    low: float | None = None
    high: float | None = None
    low_critical: float | None = None
    high_critical: float | None = None
    max_rate_per_s: float | None = None
    disabled: frozenset[str] = frozenset()
    causes: dict[str, str] | None = None  # None: the built-in causes of the metric
    tuning: dict[str, float] = {}  # per-signal overrides of the global tuning


def limits_for(config: DetectionConfig, facility: str, device: str, metric: str) -> SensorLimits:
    """Merge matching rules, least specific first, so a machine's rule beats its type's."""
    merged: dict[str, Any] = {"disabled": set()}
    if metric in _FLAT_OK:
        merged["disabled"].add("stuck")
    for rule in sorted(config.rules, key=Rule.specificity):
        if not rule.matches(facility, device, metric):
            continue
        for name in ("low", "high", "low_critical", "high_critical", "max_rate_per_s"):
            value = getattr(rule, name)
            if value is not None:
                merged[name] = value
        merged["disabled"] |= set(rule.disabled)
        if rule.causes:
            merged["causes"] = {**merged.get("causes", {}), **rule.causes}
        if rule.tuning:
            merged["tuning"] = {**merged.get("tuning", {}), **rule.tuning}
    merged["disabled"] = frozenset(merged["disabled"])
    return SensorLimits(**merged)


def current_config(conn: psycopg.Connection) -> tuple[int, DetectionConfig]:
    """The version in force and its settings (version 0: the built-in defaults)."""
    found = detector_config.newest(conn=conn)
    if found is None:
        return 0, DetectionConfig()
    return found[0], DetectionConfig.model_validate(found[1])


def save_config(
    conn: psycopg.Connection, config: DetectionConfig, *, author: str, comment: str = ""
) -> int:
    """Record a new version; return its number."""
    return detector_config.insert(
        conn=conn, config=config.model_dump(mode="json"), author=author, comment=comment[:500]
    )


def config_history(conn: psycopg.Connection, *, limit: int = 50) -> list[dict[str, Any]]:
    return detector_config.history(conn=conn, limit=limit)


__all__ = [
    "DetectionConfig",
    "DetectorName",
    "Rule",
    "SensorLimits",
    "Tuning",
    "config_history",
    "current_config",
    "limits_for",
    "save_config",
]
