"""A sink that keeps failing is retried with a bounded backoff: a rebuild from the store (a scan
of every sensor) at most once a minute, not in a loop that keeps PostgreSQL busy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from plantstream.processor.rows import Columns
from plantstream.processor.sinks import SinkBatch, SinkManager
from plantstream.processor.sinks.manager import MAX_REBUILD_RETRY_S, MAX_RETRY_S
from plantstream.store.sensors import SensorKey


class _Broken:
    name = "broken"

    def __init__(self, *, first_catch_up_works: bool = False) -> None:
        self.catch_ups: list[float] = []
        self.now = 0.0
        self.works = first_catch_up_works

    def write(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None:
        raise RuntimeError("down")

    def catch_up(self, conn: Any, missed: Sequence[SinkBatch] | None) -> None:
        if self.works:
            self.works = False
            return
        self.catch_ups.append(self.now)
        raise RuntimeError("down")


def _retry_gaps(sink: _Broken, manager: SinkManager, until: float) -> list[float]:
    while sink.now < until:
        manager.catch_up(None)  # type: ignore[arg-type]
        sink.now += 0.05
    return [b - a for a, b in zip(sink.catch_ups, sink.catch_ups[1:], strict=False)]


def test_a_failing_rebuild_backs_off_to_a_minute() -> None:
    sink = _Broken()
    manager = SinkManager(clock=lambda: sink.now)
    manager.register(sink)  # behind from the start, with nothing in memory: a rebuild
    gaps = _retry_gaps(sink, manager, until=600)
    assert max(gaps) <= MAX_REBUILD_RETRY_S + 0.1
    assert gaps[-1] >= MAX_REBUILD_RETRY_S - 0.1
    assert len(sink.catch_ups) < 25  # about 10 tries a minute apart, after the first few


def test_a_sink_behind_with_batches_in_memory_retries_every_few_seconds() -> None:
    sink = _Broken(first_catch_up_works=True)
    manager = SinkManager(clock=lambda: sink.now)
    manager.register(sink)
    manager.catch_up(None)  # type: ignore[arg-type]  # the start-up catch-up works
    kinds = (np.int32, np.int64, np.float64, np.int16, np.int32, np.int64)
    rows = Columns(*(np.zeros(1, kind) for kind in kinds))
    manager.committed(rows, {0: ("plant-01", "d", "temperature")})  # fails: batch kept in memory
    assert manager.behind() == ["broken"]
    gaps = _retry_gaps(sink, manager, until=120)
    assert max(gaps) <= MAX_RETRY_S + 0.1
    assert gaps[-1] >= MAX_RETRY_S - 0.1
