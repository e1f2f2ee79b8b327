"""Read queries behind the API: keyword-only functions over a connection.

Alerts have their own module, ``store/alerts.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from plantstream.model.signals import ValueType
from plantstream.store.hot import stored_value
from plantstream.store.rollup_series import rollup_points


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


@dataclass(frozen=True, slots=True)
class StoredSensor:
    """What the store knows of a sensor whatever the model says now (its signal removed)."""

    value_type: ValueType
    unit: str


def stored_sensor(
    conn: psycopg.Connection, *, facility: str, device: str, metric: str
) -> StoredSensor | None:
    """The sensor's stored type and unit; None if it was never stored."""
    row = conn.execute(
        "SELECT value_type, unit FROM sensors WHERE facility = %s AND device = %s AND metric = %s",
        (facility, device, metric),
    ).fetchone()
    if row is None:
        return None
    try:
        value_type = ValueType(row[0])
    except ValueError:
        value_type = ValueType.DOUBLE
    return StoredSensor(value_type, str(row[1]))


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
    """Points of one sensor in [start, end): raw rows, or 1m / 1h / 1d rollup buckets (with
    the time-weighted average ``twa``, and a counter's ``increase``: ``store/rollup_series``).

    A raw point's ``value`` has its sensor's type (int64 exact, bool, text); with
    ``quality_code`` when the source sent one.
    """
    sensor = conn.execute(
        "SELECT id, value_type, wrap, kind FROM sensors "
        "WHERE facility = %s AND device = %s AND metric = %s",
        (facility, device, metric),
    ).fetchone()
    if sensor is None:
        return []
    if step == "raw":
        with conn.cursor() as cur:
            rows = cur.execute(
                "SELECT ts, value, value_int, value_text, quality_code FROM readings "
                "WHERE sensor_id = %s AND ts >= %s AND ts < %s ORDER BY ts LIMIT %s",
                (sensor[0], start, end, max_points),
            ).fetchall()
        points: list[dict[str, Any]] = []
        for ts, value, vint, vtext, code in rows:
            point: dict[str, Any] = {"ts": ts, "value": stored_value(sensor[1], value, vint, vtext)}
            if code is not None:
                point["quality_code"] = code
            points.append(point)
        return points
    return rollup_points(
        conn,
        sensor_id=sensor[0],
        wrap=None if sensor[2] is None else float(sensor[2]),
        step=step,
        start=start,
        end=end,
        max_points=max_points,
        state=sensor[3] == "state",
    )
