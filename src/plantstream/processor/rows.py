"""A batch of decoded readings in the column form the writer copies into PostgreSQL."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class DeadLetter:
    """Something the processor could not store, kept with its reason and source position."""

    shard_id: str
    sequence: str
    facility: str | None
    reason_code: str
    reason: str
    payload: bytes


@dataclass(slots=True)
class RowBatch:
    """Valid readings of one stream batch, column-wise, in stream order."""

    sensor_ids: list[int] = field(default_factory=list)
    ts_us: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    qualities: list[int] = field(default_factory=list)
    facilities: list[str] = field(default_factory=list)  # per row, for accounting
    late: list[bool] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    counters: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.sensor_ids)
