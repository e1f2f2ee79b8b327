"""A batch of decoded readings in the column form the writer copies into PostgreSQL."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from plantstream.model import Value
from plantstream.model.values import typed_at


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
    """Readings column-wise; ``facility`` indexes into the batch's facility list.

    ``value`` is every reading's numeric view (a double; an int64 as a float; a bool 0/1; a
    text NaN): what detection and charts read. The typed columns are None for a batch of
    plain doubles without quality codes (the fast path); otherwise ``vtype`` says each
    reading's type (``model/values.py`` codes) and ``ivalue``/``text`` hold exact values.
    """

    sensor_id: npt.NDArray[np.int32]
    ts_us: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int16]
    facility: npt.NDArray[np.int32]
    received_us: npt.NDArray[np.int64]  # when ingest received the reading (detects clock skew)
    vtype: npt.NDArray[np.uint8] | None = None
    ivalue: npt.NDArray[np.int64] | None = None
    text: npt.NDArray[np.object_] | None = None
    qcode: npt.NDArray[np.int64] | None = None  # the source's quality code; -1 for none
    # how each reading's sensor is rolled up (None: every one a gauge): SignalKind code, and
    # a counter's wrap modulus (0: none)
    kind: npt.NDArray[np.int16] | None = None
    wrap: npt.NDArray[np.float64] | None = None

    @property
    def typed(self) -> bool:
        return self.vtype is not None

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
            None if self.vtype is None else self.vtype[index],
            None if self.ivalue is None else self.ivalue[index],
            None if self.text is None else self.text[index],
            None if self.qcode is None else self.qcode[index],
            None if self.kind is None else self.kind[index],
            None if self.wrap is None else self.wrap[index],
        )

    def values(self) -> list[Value]:
        """Each reading's value as its Python type (int64 exact, bool, str, float)."""
        if self.vtype is None:
            return self.value.tolist()  # type: ignore[no-any-return]
        return [
            typed_at(int(code), value, self.ivalue, self.text, i)
            for i, (code, value) in enumerate(
                zip(self.vtype.tolist(), self.value.tolist(), strict=True)
            )
        ]

    def quality_codes(self) -> list[int | None]:
        if self.qcode is None:
            return [None] * len(self)
        return [None if c < 0 else c for c in self.qcode.tolist()]


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
