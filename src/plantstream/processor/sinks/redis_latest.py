"""The Redis "latest value per sensor" sink; it never moves a value back in time, so replays
change nothing, and it catches up from PostgreSQL after Redis was down or lost its data.

A failed write or rebuild raises: the ``SinkManager`` logs it, counts it
(``plantstream_processor_errors_total{kind="redis"}``, ``..._sink_behind{sink="redis"}``) and
retries ``catch_up`` with backoff. The rebuild is chunked (``HotState.chunk`` sensors per page
and per Redis call), so it works for a facility of any size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import psycopg
import redis

from plantstream.processor.rows import Columns
from plantstream.processor.sinks.base import SinkBatch
from plantstream.store.hot import CHUNK_SENSORS, MAX_AHEAD_US, CodedRow, HotState
from plantstream.store.sensors import SensorKey


class RedisLatestSink:
    """Each batch's newest reading per sensor into ``HotState``."""

    name = "redis"
    typed_values = True  # takes every value type (the SinkManager hands others numbers only)

    def __init__(
        self,
        client: redis.Redis,
        *,
        chunk: int = CHUNK_SENSORS,
        max_ahead_us: int = MAX_AHEAD_US,
    ) -> None:
        self.hot = HotState(client, chunk=chunk, max_ahead_us=max_ahead_us)

    def write(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None:
        if len(rows):
            self.hot.update_latest(newest_rows(rows, keys, self.hot.max_ahead_us))

    def catch_up(self, conn: psycopg.Connection, missed: Sequence[SinkBatch] | None) -> None:
        if missed is None:
            self.hot.rebuild_latest(conn)
            return
        # what was missed is still in memory: cheaper than a scan of every sensor's newest
        self.hot.update_latest(
            row
            for batch in missed
            for row in newest_rows(batch.rows, batch.keys, self.hot.max_ahead_us)
        )


def newest_rows(
    rows: Columns, keys: Mapping[int, SensorKey], max_ahead_us: int = MAX_AHEAD_US
) -> list[CodedRow]:
    """Each sensor's highest-ranked reading of rows sorted by (sensor, time), with its rank.

    The rank is the timestamp capped at the receive time plus ``max_ahead_us``; usually no
    reading is capped and the newest is each sensor's last row.
    """
    if not len(rows):
        return []
    rank = np.minimum(rows.ts_us, rows.received_us + max_ahead_us)
    if np.array_equal(rank, rows.ts_us):
        order = np.arange(len(rows))
    else:  # by sensor, then rank, then time: the last row of a sensor is its "latest"
        order = np.lexsort((rows.ts_us, rank, rows.sensor_id))
    sensor = rows.sensor_id[order]
    last = order[np.flatnonzero(np.append(sensor[1:] != sensor[:-1], True))]
    newest = rows.take(last)
    return [
        (*keys[s], t, v, q, r, c)
        for s, t, v, q, r, c in zip(
            newest.sensor_id.tolist(),
            newest.ts_us.tolist(),
            newest.values(),
            newest.quality.tolist(),
            rank[last].tolist(),
            newest.quality_codes(),
            strict=True,
        )
    ]
