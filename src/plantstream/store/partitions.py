"""Daily partitions of the raw ``readings`` table: created ahead of need, dropped past retention."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import psycopg

_LOCK_ID = 0x70617274  # serialises DDL between processors creating the same day
_NAME = re.compile(r"^readings_(\d{8})$")


def partition_name(day: date) -> str:
    return f"readings_{day:%Y%m%d}"


def ensure_partitions(conn: psycopg.Connection, days: Iterable[date]) -> list[str]:
    """Create the partitions for ``days`` that do not exist yet; return the names created.

    Runs in its own short transaction so it never holds DDL locks over a data batch.
    """
    wanted = sorted(set(days))
    if not wanted:
        return []
    created: list[str] = []
    with conn.transaction():
        existing = existing_partitions(conn)
        missing = [day for day in wanted if partition_name(day) not in existing]
        if not missing:
            return []
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        existing = existing_partitions(conn)
        for day in missing:
            name = partition_name(day)
            if name in existing:
                continue
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            conn.execute(
                f"CREATE TABLE {name} PARTITION OF readings "
                f"FOR VALUES FROM ('{start.isoformat()}') "
                f"TO ('{(start + timedelta(days=1)).isoformat()}')"
            )
            created.append(name)
    return created


def existing_partitions(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'readings'::regclass"
    ).fetchall()
    return {row[0] for row in rows}


def ensure_window(conn: psycopg.Connection, *, past_days: int, future_days: int = 2) -> list[str]:
    """Partitions for every day a valid reading can fall on, from ``past_days`` ago to ahead."""
    today = datetime.now(UTC).date()
    return ensure_partitions(
        conn, (today + timedelta(days=offset) for offset in range(-past_days, future_days + 1))
    )


def drop_expired(conn: psycopg.Connection, *, retention_days: int) -> list[str]:
    """Drop raw partitions whose whole day is older than ``retention_days``; rollups stay."""
    cutoff = datetime.now(UTC).date() - timedelta(days=retention_days)
    dropped = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        for name in sorted(existing_partitions(conn)):
            match = _NAME.match(name)
            if match and datetime.strptime(match.group(1), "%Y%m%d").date() < cutoff:
                conn.execute(f"DROP TABLE {name}")
                dropped.append(name)
    return dropped
