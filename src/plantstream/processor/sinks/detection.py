"""The detection sink: a ``BatchHook`` (the detection engine) run after each commit, with the
batches it failed on replayed in order once it works again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import psycopg

from plantstream.processor.rows import Columns
from plantstream.processor.sinks.base import SinkBatch
from plantstream.store.sensors import SensorKey


class BatchHook(Protocol):
    """Called with each batch of newly stored readings; must be idempotent, may raise.

    ``rows`` are sorted by (sensor, time); ``keys`` maps a sensor id to its (facility,
    device, metric). ``plantstream.detect.DetectionEngine`` is one.
    """

    def __call__(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None: ...


class DetectionSink:
    """Adapts a ``BatchHook`` to the sink contract."""

    def __init__(self, hook: BatchHook, *, name: str = "detection") -> None:
        self.hook = hook
        self.name = name

    def write(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None:
        if len(rows):
            self.hook(rows, keys)

    def catch_up(self, conn: psycopg.Connection, missed: Sequence[SinkBatch] | None) -> None:
        # None: nothing of this process's was missed (start-up), or more than was kept; the
        # engine rebuilds its detector state from the rollups, the readings stay unevaluated
        for batch in missed or ():
            self.write(batch.rows, batch.keys)
