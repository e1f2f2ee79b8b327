"""Migration 0004 carries a database filled by the code before value types forward: every
reading and rollup survives, reads back as before (production_count now as integers), and
the new rollup columns are computed from the raw readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import redis

from plantstream.store import queries
from plantstream.store.hot import HotState
from plantstream.store.partitions import ensure_partitions
from plantstream.store.schema import head_revision, migrate

# what the processor before value types wrote: sensors, raw readings and rollups by SQL
_OLD_ROLLUP = """
INSERT INTO {table}
SELECT sensor_id, date_bin('{width}', ts, timestamptz '2000-01-01 00:00:00+00'), count(*),
       sum(value), min(value), max(value), sum(value * value),
       min(ts), (array_agg(value ORDER BY ts))[1], max(ts), (array_agg(value ORDER BY ts DESC))[1]
FROM readings GROUP BY 1, 2
"""


def test_an_old_database_is_carried_forward_without_loss(
    empty_database_url: str, redis_client: redis.Redis
) -> None:
    assert migrate(empty_database_url, revision="0002") == "0002"
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        ensure_partitions(conn, sorted({start.date(), (start + timedelta(hours=2)).date()}))
        conn.execute(
            "INSERT INTO sensors (facility, device, metric, unit) VALUES "
            "('plant-01', 'm1', 'temperature', 'degC'), "
            "('plant-01', 'm1', 'production_count', 'count')"
        )
        ids = dict(conn.execute("SELECT metric, id FROM sensors").fetchall())
        rows = []
        for i in range(90):  # every 70 s: buckets with one, two and no readings
            ts = start + timedelta(seconds=70 * i)
            rows.append((ids["temperature"], ts, 20.0 + (i % 7), i % 3))
            rows.append((ids["production_count"], ts, float(i * 5 % 200), 0))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (sensor_id, ts, value, quality) VALUES (%s, %s, %s, %s)",
                rows,
            )
        for table, width in (("rollup_1m", "1 minute"), ("rollup_1h", "1 hour")):
            conn.execute(_OLD_ROLLUP.format(table=table, width=width))  # type: ignore[arg-type]
        before = {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()  # type: ignore[arg-type]
            for t in ("readings", "rollup_1m", "rollup_1h")
        }

    assert migrate(empty_database_url) == head_revision()

    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        kept = conn.execute(
            "SELECT sensor_id, ts, value, quality FROM readings ORDER BY 1, 2"
        ).fetchall()
        assert kept == before["readings"]
        for table in ("rollup_1m", "rollup_1h"):
            now = conn.execute(
                f"SELECT sensor_id, bucket, count, sum, min, max, sum_sq, first_ts, first, "
                f"last_ts, last FROM {table} ORDER BY 1, 2"
            ).fetchall()
            assert now == before[table], table
        assert conn.execute(
            "SELECT metric, value_type, kind FROM sensors ORDER BY metric"
        ).fetchall() == [
            ("production_count", "int64", "counter"),
            ("temperature", "double", "gauge"),
        ]
        day = conn.execute("SELECT sum(count) FROM rollup_1d").fetchone()
        assert day == (180,)  # every reading in a 1-day bucket too

        # through the read path of the API: raw points typed, rollups with their new fields
        end = start + timedelta(hours=3)
        raw = queries.series(
            conn,
            facility="plant-01",
            device="m1",
            metric="production_count",
            start=start,
            end=end,
            step="raw",
        )
        assert [p["value"] for p in raw] == [i * 5 % 200 for i in range(90)]
        assert all(type(p["value"]) is int for p in raw)
        hours = queries.series(
            conn,
            facility="plant-01",
            device="m1",
            metric="production_count",
            start=start - timedelta(hours=1),
            end=end,
            step="1h",
        )
        # the counter rises by 5 a reading and resets from 195 to 0 every 40 readings
        assert sum(p["increase"] for p in hours) == 87 * 5  # 89 steps, two of them resets
        minutes = queries.series(
            conn,
            facility="plant-01",
            device="m1",
            metric="temperature",
            start=start,
            end=end,
            step="1m",
        )
        assert len(minutes) == len(before["rollup_1m"]) // 2
        assert all(p["twa"] is not None for p in minutes)
        assert all(20.0 <= p["twa"] <= 26.0 for p in minutes)  # a carried value is one of them

        hot = HotState(redis_client)
        assert hot.rebuild_latest(conn) == 2
        latest = {v.metric: v.value for v in hot.latest("plant-01")}
        assert latest == {"temperature": 20.0 + 89 % 7, "production_count": 89 * 5 % 200}
        assert type(latest["production_count"]) is int
