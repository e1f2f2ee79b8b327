"""Every statement on the ``machine_models`` table (a machine's multivariate model, one row per
training or removal with who and when; the newest row of a machine is in force, a removal has
``model`` NULL) and the reads training needs: a machine's numeric sensors, their readings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

# the newest row of each machine, restricted by the WHERE clause given
_NEWEST = """
SELECT DISTINCT ON (facility, machine) id, facility, machine, version, model, per_bucket,
       trained_from, trained_to, readings, buckets, created_at, created_by
FROM machine_models {where}
ORDER BY facility, machine, id DESC
"""


@dataclass(frozen=True, slots=True)
class MachineSensor:
    id: int
    metric: str
    value_type: str
    kind: str


def machine_sensors(
    *, conn: psycopg.Connection, facility: str, machine: str, limit: int
) -> list[MachineSensor]:
    """The sensors of a machine (a device of the facility), by metric; at most ``limit``."""
    rows = conn.execute(
        "SELECT id, metric, value_type, kind FROM sensors WHERE facility = %s AND device = %s "
        "ORDER BY metric LIMIT %s",
        (facility, machine, limit),
    ).fetchall()
    return [MachineSensor(int(r[0]), r[1], r[2], r[3]) for r in rows]


def period_readings(
    *,
    conn: psycopg.Connection,
    sensor_ids: list[int],
    start: datetime,
    end: datetime,
    limit: int,
) -> list[tuple[int, int, float]]:
    """(sensor id, ts in epoch us, value) of the sensors' numeric readings in [start, end),
    sorted by sensor and time; at most ``limit`` rows (the caller asks one more than it takes,
    to know the period held more)."""
    return conn.execute(
        "SELECT sensor_id, (extract(epoch FROM ts) * 1000000)::bigint, value FROM readings "
        "WHERE sensor_id = ANY(%s) AND ts >= %s AND ts < %s AND value IS NOT NULL "
        "ORDER BY sensor_id, ts LIMIT %s",
        (sensor_ids, start, end, limit),
    ).fetchall()


_WRITE_LOCK = 0x6D6D6F64  # advisory lock: one writer of machine models at a time


def lock_writes(conn: psycopg.Connection) -> None:
    """One writer of machine models at a time, until the caller's transaction ends (taken
    again by the same transaction, it is held once more: advisory locks stack)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))


def _next_version(conn: psycopg.Connection, facility: str, machine: str) -> int:
    # One writer at a time, until its transaction ends: versions follow one another, and rows
    # commit in id order, so a reader that remembers the newest id it saw misses none.
    lock_writes(conn)
    row = conn.execute(
        "SELECT coalesce(max(version), 0) FROM machine_models WHERE facility = %s AND machine = %s",
        (facility, machine),
    ).fetchone()
    return 1 + int(row[0] if row else 0)


def insert(
    *,
    conn: psycopg.Connection,
    facility: str,
    machine: str,
    model: dict[str, Any] | None,
    author: str,
    per_bucket: int | None = None,
    trained_from: datetime | None = None,
    trained_to: datetime | None = None,
    readings: int | None = None,
    buckets: int | None = None,
) -> int:
    """Record a new version of the machine's model (``model`` None: removed); its version.
    Runs in its own transaction (nested in the caller's if there is one)."""
    with conn.transaction():
        version = _next_version(conn, facility, machine)
        conn.execute(
            "INSERT INTO machine_models (facility, machine, version, model, per_bucket, "
            "trained_from, trained_to, readings, buckets, created_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                facility,
                machine,
                version,
                None if model is None else Jsonb(model),
                per_bucket,
                trained_from,
                trained_to,
                readings,
                buckets,
                author,
            ),
        )
    return version


def in_force(
    *, conn: psycopg.Connection, facility: str, machine: str | None = None, limit: int
) -> list[dict[str, Any]]:
    """The models in force of the facility (or of one machine), by machine; at most ``limit``."""
    where = "WHERE facility = %(f)s AND (%(m)s::text IS NULL OR machine = %(m)s)"
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT * FROM ({_NEWEST.format(where=where)}) newest "
            "WHERE model IS NOT NULL ORDER BY machine LIMIT %(limit)s",
            {"f": facility, "m": machine, "limit": limit},
        ).fetchall()


def count_in_force(*, conn: psycopg.Connection, facility: str) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM ({_NEWEST.format(where='WHERE facility = %s')}) newest "
        "WHERE model IS NOT NULL",
        (facility,),
    ).fetchone()
    return int(row[0]) if row else 0


def history(
    *, conn: psycopg.Connection, facility: str, machine: str, limit: int
) -> list[dict[str, Any]]:
    """A machine's versions newest first, without their parameters (a removal has no signals)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT version, model IS NULL AS removed, model -> 'signals' AS signals, "
            "trained_from, trained_to, created_at, created_by FROM machine_models "
            "WHERE facility = %s AND machine = %s ORDER BY id DESC LIMIT %s",
            (facility, machine, limit),
        ).fetchall()


def newest_id(*, conn: psycopg.Connection) -> int:
    """The newest row's id (0 while there is none): a change of any model moves it."""
    row = conn.execute("SELECT coalesce(max(id), 0) FROM machine_models").fetchone()
    return int(row[0]) if row else 0


def changed_since(*, conn: psycopg.Connection, after_id: int, limit: int) -> list[dict[str, Any]]:
    """The newest row of each machine that changed after row ``after_id`` (removals too),
    oldest change first; at most ``limit`` machines."""
    where = (
        "WHERE (facility, machine) IN "
        "(SELECT facility, machine FROM machine_models WHERE id > %(after)s)"
    )
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT * FROM ({_NEWEST.format(where=where)}) newest ORDER BY id LIMIT %(limit)s",
            {"after": after_id, "limit": limit},
        ).fetchall()


__all__ = [
    "MachineSensor",
    "changed_since",
    "count_in_force",
    "history",
    "in_force",
    "insert",
    "machine_sensors",
    "newest_id",
    "period_readings",
]
