"""The alert lifecycle in PostgreSQL: open -> acknowledged -> resolved, one alert per fault.

An alert is unique per sensor and *kind* of fault while unresolved (a partial unique index),
so opening is idempotent: a replay, a restart or a second processor cannot duplicate it.
Every change is also pushed to a Redis stream per facility that dashboards can follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
import redis
from psycopg.types.json import Jsonb

from plantstream.model import from_epoch_us

FEED_LENGTH = 1000


def feed_key(facility: str) -> str:
    return f"ps:alerts:{facility}"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert opened, updated or resolved, as pushed to the feed and the webhook."""

    event: str  # opened | resolved
    alert_id: int
    facility: str
    device: str
    metric: str
    kind: str
    severity: str
    message: str
    at_us: int
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "id": self.alert_id,
            "facility": self.facility,
            "device": self.device,
            "metric": self.metric,
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "at": from_epoch_us(self.at_us).isoformat().replace("+00:00", "Z"),
            "details": self.details,
        }


def open_alert(
    conn: psycopg.Connection,
    *,
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
    conn: psycopg.Connection,
    *,
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
    conn: psycopg.Connection, *, facility: str, device: str, metric: str, kind: str, at_us: int
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
    conn: psycopg.Connection, facility: str, device: str, metric: str
) -> list[tuple[str, str, datetime]]:
    return [
        (str(kind), str(severity), opened)
        for kind, severity, opened in conn.execute(
            "SELECT detector, severity, opened_at FROM alerts WHERE facility = %s AND device = %s "
            "AND metric = %s AND state <> 'resolved'",
            (facility, device, metric),
        ).fetchall()
    ]


def publish(client: redis.Redis, events: list[AlertEvent]) -> None:
    """Push events to each facility's alert feed (a capped Redis stream)."""
    if not events:
        return
    with client.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(
                feed_key(event.facility),
                {"e": orjson.dumps(event.as_dict())},
                maxlen=FEED_LENGTH,
                approximate=True,
            )
        pipe.execute()
