"""The Redis "latest value per sensor" sink; it never moves a value back in time, so replays
change nothing, and it catches up from PostgreSQL after Redis was down or lost its data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import psycopg
import redis

from plantstream.processor.rows import Columns
from plantstream.processor.sinks.base import SinkBatch
from plantstream.store.hot import HotState, LatestRow
from plantstream.store.sensors import SensorKey


class RedisLatestSink:
    """Each batch's newest reading per sensor into ``HotState``."""

    name = "redis"

    def __init__(self, client: redis.Redis) -> None:
        self.hot = HotState(client)

    def write(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None:
        if len(rows):
            self.hot.update_latest(newest_rows(rows, keys))

    def catch_up(self, conn: psycopg.Connection, missed: Sequence[SinkBatch] | None) -> None:
        if missed is None:
            self.hot.rebuild_latest(conn)
            return
        # what was missed is still in memory: cheaper than a scan of every sensor's newest
        self.hot.update_latest(
            row for batch in missed for row in newest_rows(batch.rows, batch.keys)
        )


def newest_rows(rows: Columns, keys: Mapping[int, SensorKey]) -> list[LatestRow]:
    """Each sensor's newest reading of rows sorted by (sensor, time): its last row."""
    if not len(rows):
        return []
    last = np.flatnonzero(np.append(rows.sensor_id[1:] != rows.sensor_id[:-1], True))
    return [
        (*keys[s], t, v, q)
        for s, t, v, q in zip(
            rows.sensor_id[last].tolist(),
            rows.ts_us[last].tolist(),
            rows.value[last].tolist(),
            rows.quality[last].tolist(),
            strict=True,
        )
    ]
