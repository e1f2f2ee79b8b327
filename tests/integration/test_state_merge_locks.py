"""Two processors merging time-in-state deltas of the same buckets must not deadlock: the
state merge takes its row locks in (sensor, bucket) order whatever order its deltas come in."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from plantstream.store import batches
from plantstream.testing.waiting import wait_until

BUCKET = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# a binary COPY with no rows (header, then the trailer): no plain rollup delta
_EMPTY_COPY = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + b"\xff\xff"


def _state(sensor: int, seconds: float) -> batches.StateDelta:
    start = BUCKET + timedelta(seconds=30)
    end = start + timedelta(seconds=seconds)
    return (sensor, BUCKET, start, end, json.dumps({"run": seconds}), "run", "run")


def _merge(conn: psycopg.Connection, states: list[batches.StateDelta]) -> None:
    with conn.cursor() as cur:
        batches.merge_rollups(cur, (_EMPTY_COPY,) * 3, (states, [], []))


def _stored_buckets(admin: psycopg.Connection, metrics: tuple[str, str]) -> tuple[int, int]:
    """Two sensors, the lower id first, each with a stored bucket; the higher key's first in
    the heap, so every plan meets it first."""
    low, high = (
        admin.execute(
            "INSERT INTO sensors (facility, device, metric, unit) VALUES ('f', 'd', %s, '') "
            "RETURNING id",
            (metric,),
        ).fetchone()[0]  # type: ignore[index]
        for metric in metrics
    )
    for sensor in (high, low):
        admin.execute(
            "INSERT INTO rollup_1m (sensor_id, bucket, count, sum, min, max, sum_sq, "
            "first_ts, first, last_ts, last, area, increase, kind, dirty, durations, "
            "first_text, last_text) VALUES (%s, %s, 1, 0, 0, 0, 0, %s, 0, %s, 0, 0, 0, 3, "
            "false, %s, 'run', 'run')",
            (sensor, BUCKET, BUCKET, BUCKET + timedelta(seconds=10), Jsonb({"run": 10.0})),
        )
    assert low < high
    return low, high


def _wait_for_lock(database_url: str, conn: psycopg.Connection) -> None:
    """Until ``conn``'s backend waits for a row lock (polled, with a deadline)."""
    with psycopg.connect(database_url, autocommit=True) as watch:
        wait_until(
            lambda: (
                watch.execute(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                    (conn.info.backend_pid,),
                ).fetchone()
                == (True,)
            ),
            timeout=30,
            what="the second merge to wait for the first one's lock",
        )


def _race(
    database_url: str,
    first: psycopg.Connection,
    second: psycopg.Connection,
    second_batch: Callable[[psycopg.Connection], None],
    first_next: Callable[[psycopg.Connection], None],
) -> list[BaseException]:
    """``second_batch`` runs on ``second`` in a thread until it waits for a lock ``first``
    holds; then ``first_next`` takes ``first``'s next lock and both commit. What failed
    (a ``DeadlockDetected`` if the locks were taken out of key order)."""
    failures: list[BaseException] = []

    def run_second() -> None:
        try:
            second_batch(second)
            second.commit()
        except BaseException as exc:  # reported by the caller
            failures.append(exc)
            second.rollback()

    worker = threading.Thread(target=run_second)
    worker.start()
    _wait_for_lock(database_url, second)
    try:
        first_next(first)
        first.commit()
    except psycopg.errors.DeadlockDetected as exc:
        failures.append(exc)
        first.rollback()
    worker.join(timeout=60)
    assert not worker.is_alive()
    return failures


def test_overlapping_state_merges_in_opposite_orders_both_commit(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as admin:
        low, high = _stored_buckets(admin, ("a", "b"))
    first = psycopg.connect(database_url)
    second = psycopg.connect(database_url)
    try:
        for conn in (first, second):
            batches.create_session_tables(conn)
            conn.commit()
        # the first processor holds the low bucket, as a merge in key order would
        _merge(first, [_state(low, 5.0)])
        # the second's deltas arrive high key first; the first processor then goes on to the
        # high bucket: with locks taken out of key order the second holds it while waiting
        # for the low one, and PostgreSQL aborts one of them
        failures = _race(
            database_url,
            first,
            second,
            lambda conn: _merge(conn, [_state(high, 7.0), _state(low, 7.0)]),
            lambda conn: _merge(conn, [_state(high, 5.0)]),
        )
        assert failures == []
    finally:
        first.close()
        second.close()
    with psycopg.connect(database_url, autocommit=True) as admin:
        durations = dict(
            admin.execute(  # type: ignore[arg-type]
                "SELECT sensor_id, (durations->>'run')::float FROM rollup_1m ORDER BY sensor_id"
            ).fetchall()
        )
    # both buckets took both batches' deltas, in the same order
    assert set(durations) == {low, high}
    assert durations[low] == durations[high]


def test_a_plain_and_a_state_delta_lock_their_buckets_in_one_key_order(database_url: str) -> None:
    """A batch with a plain delta for one sensor and a time-in-state delta for another (a
    processor whose kind cache still calls a state a gauge sends both) takes its row locks in
    (sensor, bucket) order over both, not the state's first: a processor holding the lower
    bucket then takes the higher one without a deadlock."""
    with psycopg.connect(database_url, autocommit=True) as admin:
        gauge, state = _stored_buckets(admin, ("gauge", "state"))
        with admin.cursor() as cur:  # the gauge's bucket as a binary delta row
            plain = bytearray()
            with cur.copy(
                sql.SQL(
                    "COPY (SELECT {} FROM rollup_1m WHERE sensor_id = {}) TO STDOUT BINARY"
                ).format(batches._DELTA_COLUMNS, sql.Literal(gauge))
            ) as cp:
                for chunk in cp:
                    plain += chunk
    first = psycopg.connect(database_url)
    second = psycopg.connect(database_url)
    try:
        batches.create_session_tables(second)
        second.commit()
        # the first processor holds the gauge's (the lower) bucket
        first.execute("SELECT 1 FROM rollup_1m WHERE sensor_id = %s FOR UPDATE", (gauge,))

        def second_batch(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                batches.merge_rollups(
                    cur, (bytes(plain), _EMPTY_COPY, _EMPTY_COPY), ([_state(state, 7.0)], [], [])
                )

        # the first goes on to the state's bucket: with the state's lock taken first, the
        # second holds it while it waits for the gauge's, and PostgreSQL aborts one of them
        failures = _race(
            database_url,
            first,
            second,
            second_batch,
            lambda conn: conn.execute(
                "SELECT 1 FROM rollup_1m WHERE sensor_id = %s FOR UPDATE", (state,)
            ),
        )
        assert failures == []
    finally:
        first.close()
        second.close()
    with psycopg.connect(database_url, autocommit=True) as admin:
        counts = dict(
            admin.execute(  # type: ignore[arg-type]
                "SELECT sensor_id, count FROM rollup_1m ORDER BY sensor_id"
            ).fetchall()
        )
    assert counts == {gauge: 2, state: 1}  # the gauge's delta was merged once
