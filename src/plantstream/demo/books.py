"""The processor's books (``processor_counters``), read as totals and as deltas since a start."""

from __future__ import annotations

from collections import Counter

import psycopg


def totals(conn: psycopg.Connection) -> Counter[str]:
    """Counter name -> total over every facility."""
    rows = conn.execute(
        "SELECT counter, sum(value)::bigint FROM processor_counters GROUP BY counter"
    ).fetchall()
    return Counter({name: int(value) for name, value in rows})


def since(conn: psycopg.Connection, baseline: Counter[str]) -> Counter[str]:
    now = totals(conn)
    now.subtract(baseline)
    return now
