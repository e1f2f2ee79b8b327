"""The processor's books (``processor_counters``), per run: drained first, then as deltas.

A data directory may hold earlier runs, and one stopped early may have left readings in the
stream; they are processed before a run takes its baseline, so a run counts only its own.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import psycopg

from plantstream.store.leases import committed_checkpoints
from plantstream.stream.base import Stream


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


def shards_behind(conn: psycopg.Connection, stream: Stream) -> list[str]:
    """The shards holding records past their committed checkpoint (empty: all processed)."""
    committed = committed_checkpoints(conn, stream=stream.name)
    behind = []
    for shard in stream.list_shards():
        checkpoint, finished = committed.get(shard.shard_id, (None, False))
        if not finished and stream.read(shard.shard_id, checkpoint, 1).records:
            behind.append(shard.shard_id)
    return behind


def wait_drained(
    connect: Callable[[], psycopg.Connection], stream: Stream, *, timeout: float
) -> bool:
    """Wait until every record in ``stream`` is committed by a processor; False on timeout."""
    deadline = time.monotonic() + timeout
    with connect() as conn:
        while shards_behind(conn, stream):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
    return True
