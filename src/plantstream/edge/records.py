"""One collected reading as the queue keeps it: typed value, both source timestamps, raw status.

``ts_us`` is the reading's time (what plantstream stores and de-duplicates on, with the
signal); ``source_ts_us`` / ``server_ts_us`` are the OPC UA timestamps kept beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from plantstream.edge.config import ValueKind

GOOD, UNCERTAIN, BAD = 0, 1, 2


@dataclass(frozen=True, slots=True)
class EdgeReading:
    source: str
    device: str
    metric: str
    ts_us: int
    value_type: ValueKind
    value: float | int | str | None
    quality: int = GOOD
    raw_status: int | None = None  # the OPC UA StatusCode (uint32) or a Modbus exception code
    unit: str | None = None
    source_ts_us: int | None = None
    server_ts_us: int | None = None


def opcua_quality(status: int) -> int:
    """OPC UA StatusCode severity (its top two bits) as plantstream quality."""
    severity = (status >> 30) & 0b11
    return GOOD if severity == 0 else UNCERTAIN if severity == 1 else BAD
