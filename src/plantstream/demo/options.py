"""What a demo run is asked for: its size, rate, port, data directory and faults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration: float = 60.0
    facilities: int = 2
    machines: int = 6
    rate: float = 2000.0
    port: int = 8080
    data_dir: Path = Path(".plantstream")
    seed: int = 7
    faults: int | None = None  # default: one per machine type and fault kind, as fits
    live: bool = True
    history: float = 360.0  # seconds of simulated history sent first: detectors learn normal
    sparkplug_machines: int = 1  # machines per facility publishing Sparkplug B over MQTT (0: none)
    opcua: bool = False  # one machine behind an OPC UA server, collected by the edge agent
