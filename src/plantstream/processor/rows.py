"""A batch of decoded readings in the column form the writer copies into PostgreSQL."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


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
class Columns:
    """Readings column-wise; ``facility`` indexes into the batch's facility list."""

    sensor_id: npt.NDArray[np.int32]
    ts_us: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int16]
    facility: npt.NDArray[np.int32]
    received_us: npt.NDArray[np.int64]  # when ingest received the reading (detects clock skew)

    @classmethod
    def empty(cls) -> Columns:
        return cls(
            np.empty(0, np.int32),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.int16),
            np.empty(0, np.int32),
            np.empty(0, np.int64),
        )

    def __len__(self) -> int:
        return len(self.sensor_id)

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Columns:
        return Columns(
            self.sensor_id[index],
            self.ts_us[index],
            self.value[index],
            self.quality[index],
            self.facility[index],
            self.received_us[index],
        )


@dataclass(slots=True)
class RowBatch:
    """Valid readings of one stream batch (stream order), and what the batch refused."""

    rows: Columns
    facilities: list[str]
    dead_letters: list[DeadLetter] = field(default_factory=list)
    counters: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.rows)

    def count_by_facility(self, facility_codes: npt.NDArray[np.int32]) -> dict[str, int]:
        counts = np.bincount(facility_codes, minlength=len(self.facilities))
        return {name: int(n) for name, n in zip(self.facilities, counts, strict=True) if n}
