"""The catalog of metrics plantstream understands: canonical unit, accepted units, plausible range.

Readings are stored in the canonical unit so rollups never mix degF with degC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


def _scale(factor: float, offset: float = 0.0) -> Callable[[float], float]:
    return lambda value: value * factor + offset


@dataclass(frozen=True, slots=True)
class Metric:
    """A kind of measurement, with the units it may arrive in and the range that is plausible."""

    name: str
    unit: str
    low: float
    high: float
    conversions: dict[str, Callable[[float], float]] = field(default_factory=dict)

    def to_canonical(self, value: float, unit: str) -> float | None:
        """``value`` in the canonical unit, or None when ``unit`` is not one of this metric's."""
        if unit == self.unit:
            return value
        convert = self.conversions.get(unit)
        return None if convert is None else convert(value)

    @property
    def units(self) -> tuple[str, ...]:
        return (self.unit, *self.conversions)


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            "temperature",
            "degC",
            -60.0,
            1200.0,
            {"degF": lambda f: (f - 32.0) * 5.0 / 9.0, "K": _scale(1.0, -273.15)},
        ),
        Metric(
            "pressure",
            "bar",
            -1.0,
            1000.0,
            {"kPa": _scale(0.01), "Pa": _scale(1e-5), "psi": _scale(0.0689475729)},
        ),
        Metric("vibration_rms", "mm/s", 0.0, 500.0, {"in/s": _scale(25.4)}),
        Metric("spindle_speed", "rpm", 0.0, 60000.0),
        Metric("production_count", "count", 0.0, 1e12),
        Metric("current", "A", -10000.0, 10000.0),
        Metric("power", "kW", -100000.0, 100000.0, {"W": _scale(1e-3)}),
        Metric("humidity", "%RH", 0.0, 100.0),
        Metric("flow_rate", "L/min", 0.0, 1e6, {"m3/h": _scale(1000.0 / 60.0)}),
    )
}

QUALITIES: dict[str, int] = {"good": 0, "uncertain": 1, "bad": 2}
QUALITY_NAMES: dict[int, str] = {code: name for name, code in QUALITIES.items()}
