"""Read queries behind the API: keyword-only functions over a connection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

_ALERT_COLUMNS = (
    "id, facility, device, metric, detector, severity, state, message, opened_at, "
    "last_seen_at, acknowledged_at, acknowledged_by, resolved_at, details"
)


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


def alerts(
    conn: psycopg.Connection, *, facility: str, state: str | None, limit: int
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE facility = %s "
            "AND (%s::text IS NULL OR state = %s) ORDER BY opened_at DESC, id DESC LIMIT %s",
            (facility, state, state, limit),
        ).fetchall()


def alert(conn: psycopg.Connection, alert_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = %s", (alert_id,)
        ).fetchone()


def acknowledge_alert(conn: psycopg.Connection, alert_id: int, *, by: str) -> dict[str, Any] | None:
    """Move an open alert to acknowledged; None if it was not open."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), "
            f"acknowledged_by = %s WHERE id = %s AND state = 'open' RETURNING {_ALERT_COLUMNS}",
            (by, alert_id),
        ).fetchone()
