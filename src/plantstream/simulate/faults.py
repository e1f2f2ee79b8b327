"""Faults the simulator injects, labeled so detection can be scored against them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    OVERHEATING = "overheating"  # temperature ramps up
    BEARING_WEAR = "bearing_wear"  # vibration RMS grows
    STUCK_SENSOR = "stuck_sensor"  # the value freezes
    DROPOUT = "dropout"  # the sensor goes silent
    SPIKE = "spike"  # isolated wild samples
    CLOCK_SKEW = "clock_skew"  # the gateway clock runs ahead


# which metric each fault shows on, when the machine type has it
FAULT_METRICS: dict[FaultKind, tuple[str, ...]] = {
    FaultKind.OVERHEATING: ("temperature",),
    FaultKind.BEARING_WEAR: ("vibration_rms",),
    FaultKind.STUCK_SENSOR: ("pressure", "temperature", "flow_rate"),
    FaultKind.DROPOUT: ("vibration_rms", "temperature", "pressure"),
    FaultKind.SPIKE: ("pressure", "current", "temperature", "flow_rate"),
    FaultKind.CLOCK_SKEW: ("temperature",),
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: on ``device``'s ``metric`` from ``start`` to ``end`` (epoch seconds)."""

    kind: FaultKind
    facility: str
    device: str
    metric: str
    start: float
    end: float
    magnitude: float = 1.0

    def active(self, t: float) -> bool:
        return self.start <= t < self.end

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": str(self.kind),
            "facility": self.facility,
            "device": self.device,
            "metric": self.metric,
            "start": self.start,
            "end": self.end,
            "magnitude": self.magnitude,
        }
