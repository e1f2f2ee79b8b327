"""Fresh PostgreSQL databases and drain probes for tests and benchmarks.

Each test or benchmark gets a database of its own on a shared server (created, optionally from
a migrated template, and dropped with ``FORCE``); the probes tell when the processor caught up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from plantstream.testing.waiting import POLL_SECONDS


def with_database(url: str, database: str) -> str:
    """``url`` with its database name replaced by ``database``."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


def create_database(admin_url: str, name: str, *, template: str | None = None) -> str:
    """Create database ``name`` (dropping one left over by a killed run); its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        if template is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        else:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` even while connections to it are open."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def readings_count(conn: psycopg.Connection) -> int:
    """Rows in the raw ``readings`` table: what a user querying the history would find."""
    row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0


def stored_counter(conn: psycopg.Connection) -> int:
    """Readings committed so far by the processor's own ``stored`` counter (cheap to poll)."""
    row = conn.execute(
        "SELECT coalesce(sum(value), 0)::bigint FROM processor_counters WHERE counter = 'stored'"
    ).fetchone()
    return int(row[0]) if row else 0


def wait_for_readings(
    database_url: str,
    expected: int,
    *,
    timeout: float,
    count: Callable[[psycopg.Connection], int] = readings_count,
    interval: float = POLL_SECONDS,
) -> tuple[int, float]:
    """Drain: poll ``count`` until it reaches ``expected`` or ``timeout`` passes.

    Returns (the last count, seconds waited) and does not raise, so a benchmark can report a
    shortfall and a test can assert on it with the numbers in the message.
    """
    started = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            seen = count(conn)
            waited = time.monotonic() - started
            if seen >= expected or waited > timeout:
                return seen, waited
            time.sleep(interval)
