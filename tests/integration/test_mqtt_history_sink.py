"""``serve mqtt``'s history sink (``StoreHistory``) on real PostgreSQL: what the store refuses
is kept and counted (nobody is there to answer), a batch is written in chunks of
``history_chunk_rows``, and the register policy records new signals as unclassified."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from plantstream.history import HistoryStore
from plantstream.model import (
    DEFAULT_SIGNALS,
    FixedCatalog,
    ParsedBatch,
    Reading,
    TimeWindow,
    to_epoch_us,
)
from plantstream.model.signals import UnknownSignalPolicy
from plantstream.mqtt.history import StoreHistory
from plantstream.store import signal_defs
from plantstream.store.catalog import StoreCatalog
from plantstream.store.keys import Principal, Role

WHO = Principal("mqtt:bridge-1", Role.INGEST, "plant-01")
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def pool(database_url: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(
        database_url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True
    ) as p:
        yield p


def _reading(metric: str, days_ago: float, value: float = 20.0) -> Reading:
    return Reading("m1", metric, to_epoch_us(NOW - timedelta(days=days_ago)), value)


def _sink(pool: ConnectionPool, store: HistoryStore, **options: int) -> StoreHistory:
    return StoreHistory(pool, store, retention_days=30, window=TimeWindow(), **options)


def _counter(db: psycopg.Connection, name: str) -> int | None:
    row = db.execute(
        "SELECT value FROM processor_counters WHERE facility = 'plant-01' AND counter = %s",
        (name,),
    ).fetchone()
    return None if row is None else int(row[0])


def test_a_reading_the_store_refuses_is_dead_lettered_and_counted(
    pool: ConnectionPool, db: psycopg.Connection
) -> None:
    store = HistoryStore(catalog=FixedCatalog(DEFAULT_SIGNALS), retention_days=30)
    batch = ParsedBatch(
        "plant-01", [_reading("temperature", 2), _reading("temperature", 40, 7.5)], []
    )
    _sink(pool, store).write_history(WHO, batch, received_us=to_epoch_us(NOW))
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (1,)
    letters = db.execute(
        "SELECT stream, shard_id, facility, reason_code, reason, payload FROM dead_letters"
    ).fetchall()
    assert len(letters) == 1
    stream, shard, facility, code, reason, payload = letters[0]
    assert (stream, shard, facility, code) == (
        "history",
        "mqtt:bridge-1",
        "plant-01",
        "beyond_retention",
    )
    assert "older than the raw retention of 30 days" in reason
    assert json.loads(bytes(payload)) == {
        "device": "m1",
        "metric": "temperature",
        "ts_us": to_epoch_us(NOW - timedelta(days=40)),
        "value": 7.5,
    }
    assert _counter(db, "history_rejected") == 1
    assert _counter(db, "history_stored") == 1


def test_a_batch_is_written_in_transactions_of_at_most_chunk_rows(
    pool: ConnectionPool, db: psycopg.Connection
) -> None:
    store = HistoryStore(catalog=FixedCatalog(DEFAULT_SIGNALS), retention_days=30)
    batch = ParsedBatch("plant-01", [_reading("temperature", 1 + i / 24) for i in range(5)], [])
    _sink(pool, store, chunk_rows=2).write_history(WHO, batch, received_us=to_epoch_us(NOW))
    # the rows of one transaction share its xmin
    assert db.execute("SELECT count(*), count(DISTINCT xmin::text) FROM readings").fetchone() == (
        5,
        3,
    )


def test_under_register_new_signals_are_recorded_and_past_the_bound_dead_lettered(
    pool: ConnectionPool, db: psycopg.Connection
) -> None:
    signal_defs.set_policy(conn=db, facility="plant-01", policy=UnknownSignalPolicy.REGISTER)
    store = HistoryStore(catalog=StoreCatalog(pool, miss_refresh=0.0), retention_days=30)
    sink = _sink(pool, store)
    batch = ParsedBatch("plant-01", [_reading("coolant_flow", 3)], [])
    sink.write_history(WHO, batch, received_us=to_epoch_us(NOW))
    assert signal_defs.unclassified(conn=db, facility="plant-01") == ["coolant_flow"]
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (1,)

    db.execute(
        "INSERT INTO signal_defs (facility, name, value_type, kind, unclassified) "
        "SELECT 'plant-01', 'x' || i, 'double', 'gauge', true FROM generate_series(2, %s) i",
        (signal_defs.MAX_UNCLASSIFIED,),
    )
    full = ParsedBatch("plant-01", [_reading("spindle_load", 3), _reading("coolant_flow", 2)], [])
    sink.write_history(WHO, full, received_us=to_epoch_us(NOW))
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (2,)
    assert db.execute("SELECT reason_code FROM dead_letters").fetchall() == [("unknown_metric",)]
