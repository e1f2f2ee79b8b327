"""Read queries behind the API: keyword-only functions over a connection.

Alerts have their own module, ``store/alerts.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row


def facilities(conn: psycopg.Connection, *, only: str | None) -> list[dict[str, Any]]:
    """Facilities with device and sensor counts and open alerts; ``only`` limits to one."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT s.facility, count(DISTINCT s.device) AS devices, count(*) AS sensors,
                   coalesce((SELECT count(*) FROM alerts a
                             WHERE a.facility = s.facility AND a.state = 'open'), 0)
                       AS open_alerts
            FROM sensors s
            WHERE %(only)s::text IS NULL OR s.facility = %(only)s
            GROUP BY s.facility ORDER BY s.facility
            """,
            {"only": only},
        ).fetchall()


def series(
    conn: psycopg.Connection,
    *,
    facility: str,
    device: str,
    metric: str,
    start: datetime,
    end: datetime,
    step: str,
    max_points: int = 20_000,
) -> list[dict[str, Any]]:
    """Points of one sensor in [start, end): raw rows, or 1m / 1h rollup buckets."""
    sensor = conn.execute(
        "SELECT id FROM sensors WHERE facility = %s AND device = %s AND metric = %s",
        (facility, device, metric),
    ).fetchone()
    if sensor is None:
        return []
    if step == "raw":
        sql = (
            "SELECT ts, value FROM readings WHERE sensor_id = %s AND ts >= %s AND ts < %s "
            "ORDER BY ts LIMIT %s"
        )
    else:
        table = "rollup_1m" if step == "1m" else "rollup_1h"
        sql = (
            f"SELECT bucket AS ts, sum / count AS value, min, max, count FROM {table} "
            "WHERE sensor_id = %s AND bucket >= %s AND bucket < %s ORDER BY bucket LIMIT %s"
        )
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, (sensor[0], start, end, max_points)).fetchall()
