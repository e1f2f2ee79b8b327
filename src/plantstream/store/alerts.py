"""Every statement on the ``alerts`` table, and the alert feed in Redis (a capped stream per
facility that dashboards follow): keyword-only functions over a connection or client."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
import redis
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from redis.cluster import RedisCluster

from plantstream.model import from_epoch_us

FEED_LENGTH = 1000
COLUMNS = (
    "id, facility, device, metric, detector, severity, state, message, opened_at, "
    "last_seen_at, acknowledged_at, acknowledged_by, resolved_at, details"
)


def feed_key(facility: str) -> str:
    """The facility's alert feed. Kept under its first name: dashboards outside plantstream
    follow it, and it is only ever written alone (one key per command, Cluster-safe)."""
    return f"ps:alerts:{facility}"


# -- the lifecycle, written by the detection engine -------------------------------------


# An alert is unique per sensor and kind of fault while unresolved (a partial unique index), so
# opening is idempotent: a replay, a restart or a second processor cannot duplicate it.
def open_alert(
    *,
    conn: psycopg.Connection,
    facility: str,
    device: str,
    metric: str,
    sensor_id: int | None,
    kind: str,
    severity: str,
    message: str,
    at_us: int,
    details: dict[str, Any],
) -> tuple[int, bool]:
    """Open (or find the unresolved) alert for this sensor and kind; (id, newly opened)."""
    at = from_epoch_us(at_us)
    row = conn.execute(
        """
        INSERT INTO alerts AS a (facility, device, metric, sensor_id, detector, severity,
                                 message, opened_at, last_seen_at, details)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (facility, device, metric, detector) WHERE state <> 'resolved'
        DO UPDATE SET last_seen_at = greatest(a.last_seen_at, excluded.last_seen_at)
        RETURNING id, (xmax = 0) AS inserted
        """,
        (facility, device, metric, sensor_id, kind, severity, message, at, at, Jsonb(details)),
    ).fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
        raise RuntimeError("alert upsert returned nothing")
    return int(row[0]), bool(row[1])


def touch_alert(
    *,
    conn: psycopg.Connection,
    facility: str,
    device: str,
    metric: str,
    kind: str,
    at_us: int,
    severity: str | None = None,
) -> None:
    """The fault goes on: move ``last_seen_at`` (and raise the severity to critical)."""
    conn.execute(
        "UPDATE alerts SET last_seen_at = greatest(last_seen_at, %s), "
        "severity = CASE WHEN %s = 'critical' THEN 'critical' ELSE severity END "
        "WHERE facility = %s AND device = %s AND metric = %s AND detector = %s "
        "AND state <> 'resolved'",
        (from_epoch_us(at_us), severity, facility, device, metric, kind),
    )


def resolve_alert(
    *, conn: psycopg.Connection, facility: str, device: str, metric: str, kind: str, at_us: int
) -> int | None:
    """Resolve the unresolved alert of this sensor and kind; its id, or None if none was."""
    row = conn.execute(
        "UPDATE alerts SET state = 'resolved', resolved_at = greatest(%s, opened_at) "
        "WHERE facility = %s AND device = %s AND metric = %s AND detector = %s "
        "AND state <> 'resolved' RETURNING id",
        (from_epoch_us(at_us), facility, device, metric, kind),
    ).fetchone()
    return int(row[0]) if row else None


def unresolved_kinds(
    *, conn: psycopg.Connection, facility: str, device: str, metric: str
) -> list[tuple[str, str, datetime]]:
    """(kind, severity, opened_at) of the sensor's alerts not yet resolved."""
    return [
        (str(kind), str(severity), opened)
        for kind, severity, opened in conn.execute(
            "SELECT detector, severity, opened_at FROM alerts WHERE facility = %s AND device = %s "
            "AND metric = %s AND state <> 'resolved'",
            (facility, device, metric),
        ).fetchall()
    ]


def unresolved_kinds_of(
    *, conn: psycopg.Connection, sensors: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], list[tuple[str, str, datetime]]]:
    """``unresolved_kinds`` of many (facility, device, metric) sensors in one query; sensors
    without any are absent."""
    found: dict[tuple[str, str, str], list[tuple[str, str, datetime]]] = {}
    if not sensors:
        return found
    facilities, devices, metrics = (list(column) for column in zip(*sensors, strict=True))
    for facility, device, metric, kind, severity, opened in conn.execute(
        "SELECT a.facility, a.device, a.metric, a.detector, a.severity, a.opened_at "
        "FROM unnest(%s::text[], %s::text[], %s::text[]) AS s (facility, device, metric) "
        "JOIN alerts a USING (facility, device, metric) WHERE a.state <> 'resolved' "
        "ORDER BY a.id",
        (facilities, devices, metrics),
    ).fetchall():
        found.setdefault((facility, device, metric), []).append((str(kind), str(severity), opened))
    return found


def publish(
    *, client: redis.Redis | RedisCluster, events: Iterable[tuple[str, dict[str, Any]]]
) -> None:
    """Push (facility, event) pairs to each facility's feed, oldest trimmed away."""
    items = list(events)
    if not items:
        return
    with client.pipeline(transaction=False) as pipe:
        for facility, event in items:
            pipe.xadd(
                feed_key(facility), {"e": orjson.dumps(event)}, maxlen=FEED_LENGTH, approximate=True
            )
        pipe.execute()


# -- reads and acknowledgement, for the API and the demo --------------------------------


def list_alerts(
    *, conn: psycopg.Connection, facility: str, state: str | None, limit: int
) -> list[dict[str, Any]]:
    """A facility's alerts, newest first, optionally of one state."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {COLUMNS} FROM alerts WHERE facility = %s "
            "AND (%s::text IS NULL OR state = %s) ORDER BY opened_at DESC, id DESC LIMIT %s",
            (facility, state, state, limit),
        ).fetchall()


def page_alerts(
    *,
    conn: psycopg.Connection,
    facility: str,
    state: str | None,
    device: str | None,
    kind: str | None,
    from_us: int | None,
    to_us: int | None,
    before: tuple[int, int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A facility's alerts, newest first, filtered; ``before`` = (opened epoch us, id) of
    the last row of the previous page (keyset paging: stable while alerts open)."""
    opened = "(extract(epoch FROM opened_at) * 1e6)::bigint"
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {COLUMNS} FROM alerts WHERE facility = %(f)s "
            "AND (%(s)s::text IS NULL OR state = %(s)s) "
            "AND (%(d)s::text IS NULL OR device = %(d)s) "
            "AND (%(k)s::text IS NULL OR detector = %(k)s) "
            "AND (%(a)s::bigint IS NULL OR opened_at >= to_timestamp(%(a)s / 1e6)) "
            "AND (%(b)s::bigint IS NULL OR opened_at < to_timestamp(%(b)s / 1e6)) "
            f"AND (%(cu)s::bigint IS NULL OR ({opened}, id) < (%(cu)s, %(ci)s)) "
            f"ORDER BY {opened} DESC, id DESC LIMIT %(n)s",
            {
                "f": facility,
                "s": state,
                "d": device,
                "k": kind,
                "a": from_us,
                "b": to_us,
                "cu": None if before is None else before[0],
                "ci": None if before is None else before[1],
                "n": limit,
            },
        ).fetchall()


def get_alert(*, conn: psycopg.Connection, alert_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {COLUMNS} FROM alerts WHERE id = %s", (alert_id,)).fetchone()


def acknowledge_alert(*, conn: psycopg.Connection, alert_id: int, by: str) -> dict[str, Any] | None:
    """Move an open alert to acknowledged; None if it was not open."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), "
            f"acknowledged_by = %s WHERE id = %s AND state = 'open' RETURNING {COLUMNS}",
            (by, alert_id),
        ).fetchone()


def count_open(*, conn: psycopg.Connection) -> int:
    """Alerts open (not acknowledged, not resolved) over all facilities."""
    row = conn.execute("SELECT count(*) FROM alerts WHERE state = 'open'").fetchone()
    return int(row[0]) if row else 0


def opened_since(
    *, conn: psycopg.Connection, since_s: float
) -> list[tuple[str, str, str, str, float]]:
    """(facility, device, metric, kind, opened epoch seconds) of alerts opened since then."""
    return [
        (str(f), str(d), str(m), str(k), float(opened))
        for f, d, m, k, opened in conn.execute(
            "SELECT facility, device, metric, detector, extract(epoch FROM opened_at) "
            "FROM alerts WHERE opened_at >= to_timestamp(%s)",
            (since_s,),
        ).fetchall()
    ]


__all__ = [
    "COLUMNS",
    "FEED_LENGTH",
    "acknowledge_alert",
    "count_open",
    "feed_key",
    "get_alert",
    "list_alerts",
    "open_alert",
    "opened_since",
    "publish",
    "resolve_alert",
    "touch_alert",
    "unresolved_kinds",
    "unresolved_kinds_of",
]


# -- evaluation (``plantstream evaluate``): a scratch facility's alerts, then none ---------


def alert_spans(
    *, conn: psycopg.Connection, facility: str
) -> list[tuple[str, str, int, int | None]]:
    """(device, kind, opened epoch us, resolved epoch us or None) of every alert of the
    facility, in the order they opened."""
    rows = conn.execute(
        "SELECT device, detector, (extract(epoch FROM opened_at) * 1e6)::bigint, "
        "(extract(epoch FROM resolved_at) * 1e6)::bigint FROM alerts WHERE facility = %s "
        "ORDER BY opened_at, id",
        (facility,),
    ).fetchall()
    return [(d, k, int(o), None if r is None else int(r)) for d, k, o, r in rows]


def delete_facility(*, conn: psycopg.Connection, facility: str) -> None:
    """Remove a scratch facility's alerts and the sensors that hold no readings."""
    with conn.transaction():
        conn.execute("DELETE FROM alerts WHERE facility = %s", (facility,))
        conn.execute(
            "DELETE FROM sensors s WHERE facility = %s AND NOT EXISTS "
            "(SELECT 1 FROM readings r WHERE r.sensor_id = s.id)",
            (facility,),
        )
