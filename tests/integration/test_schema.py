"""Migrations build the schema on a real server, idempotently, and partitions come and go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from plantstream.store.partitions import (
    drop_expired,
    ensure_partitions,
    ensure_window,
    existing_partitions,
    partition_name,
)
from plantstream.store.schema import current_revision, head_revision, migrate
from plantstream.store.sensors import SensorRegistry

TABLES = {
    "sensors",
    "readings",
    "rollup_1m",
    "rollup_1h",
    "alerts",
    "dead_letters",
    "shard_leases",
    "processor_counters",
    "api_keys",
}


def test_migrate_builds_every_table_and_is_idempotent(empty_database_url: str) -> None:
    assert current_revision(empty_database_url) is None
    assert migrate(empty_database_url) == head_revision()
    assert migrate(empty_database_url) == head_revision()
    with psycopg.connect(empty_database_url) as conn:
        names = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        partitioned = conn.execute(
            "SELECT relkind FROM pg_class WHERE relname = 'readings'"
        ).fetchone()
    assert names >= TABLES
    assert partitioned == ("p",)


def test_raw_readings_go_to_daily_partitions_and_duplicates_are_refused(
    db: psycopg.Connection,
) -> None:
    today = datetime.now(UTC).date()
    created = ensure_partitions(db, [today, today - timedelta(days=1)])
    assert sorted(created) == sorted([partition_name(today), partition_name(today - timedelta(1))])
    assert ensure_partitions(db, [today]) == []
    sensor = SensorRegistry().resolve(db, [("f", "d", "temperature")])[("f", "d", "temperature")]
    ts = datetime.now(UTC)
    db.execute("INSERT INTO readings VALUES (%s, %s, 1.0, 0)", (sensor, ts))
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("INSERT INTO readings VALUES (%s, %s, 2.0, 0)", (sensor, ts))
    stored = db.execute(f"SELECT value FROM {partition_name(today)}").fetchall()
    assert stored == [(1.0,)]


def test_a_reading_without_a_partition_is_refused_not_lost_silently(
    db: psycopg.Connection,
) -> None:
    sensor = SensorRegistry().resolve(db, [("f", "d", "pressure")])[("f", "d", "pressure")]
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO readings VALUES (%s, '2001-01-01Z', 1.0, 0)", (sensor,))


def test_retention_drops_only_expired_days(db: psycopg.Connection) -> None:
    ensure_window(db, past_days=10, future_days=1)
    before = existing_partitions(db)
    assert len(before) == 12
    dropped = drop_expired(db, retention_days=5)
    today = datetime.now(UTC).date()
    assert sorted(dropped) == sorted(
        partition_name(today - timedelta(days=d)) for d in range(6, 11)
    )
    assert existing_partitions(db) == before - set(dropped)


def test_sensor_registry_gives_stable_ids_across_processes(db: psycopg.Connection) -> None:
    keys = [("plant-01", f"m{i}", "temperature") for i in range(50)]
    first = SensorRegistry().resolve(db, keys)
    second = SensorRegistry().resolve(db, [*keys[::-1], ("plant-02", "m0", "pressure")])
    assert len(set(first.values())) == 50
    assert all(second[k] == v for k, v in first.items())
    unit = db.execute(
        "SELECT unit FROM sensors WHERE facility = 'plant-02' AND device = 'm0'"
    ).fetchone()
    assert unit == ("bar",)
