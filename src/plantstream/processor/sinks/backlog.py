"""The backlog sink: after each commit, the readings stored per facility are taken off the
facility's backlog counters (``store.backlog``), which ingest's admission reads
(``ingest.backlog``: 429 ``quota_backlog`` past the bound).

Replays after a crash hand a batch again and take it off twice; what the sink missed while Redis
was down is taken off from the batches the processor kept, and a gap it cannot know (start-up)
is left alone: either way the counters' windows forget such errors after their horizon.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import psycopg

from plantstream.processor.rows import Columns
from plantstream.processor.sinks.base import SinkBatch
from plantstream.store.backlog import OUT, BacklogCounters
from plantstream.store.sensors import SensorKey


class BacklogSink:
    """Counts each committed batch's readings off their facilities' backlogs."""

    name = "backlog"

    def __init__(self, counters: BacklogCounters) -> None:
        self.counters = counters

    def write(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None:
        counts = per_facility(rows, keys)
        if counts:
            self.counters.add(OUT, counts)

    def catch_up(self, conn: psycopg.Connection, missed: Sequence[SinkBatch] | None) -> None:
        if missed is None:
            return  # unknown: the windows' horizon heals the difference
        counts: defaultdict[str, int] = defaultdict(int)
        for batch in missed:
            for facility, n in per_facility(batch.rows, batch.keys).items():
                counts[facility] += n
        if counts:
            self.counters.add(OUT, counts)


def per_facility(rows: Columns, keys: Mapping[int, SensorKey]) -> dict[str, int]:
    """Readings of ``rows`` per facility (by their sensors' keys)."""
    if not len(rows):
        return {}
    sensors, counts = np.unique(rows.sensor_id, return_counts=True)
    result: defaultdict[str, int] = defaultdict(int)
    for sensor, n in zip(sensors.tolist(), counts.tolist(), strict=True):
        key = keys.get(sensor)
        if key is not None:
            result[key[0]] += n  # (facility, device, metric)
    return dict(result)
