"""``plantstream import`` on real PostgreSQL: CSV and Parquet, wide and long files, a mapping
file, timestamps read in a time zone, the rejects file, exactly-once re-import, rollups equal to
a brute-force reference three years back, and the retention rule."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from integration.test_rollups_exact import WRAP, reference
from psycopg_pool import ConnectionPool

from plantstream.history import ColumnMapping, FileImporter, HistoryStore, RejectsFile
from plantstream.history.readings import store_history_batch
from plantstream.model import (
    DEFAULT_SIGNALS,
    FixedCatalog,
    ParsedBatch,
    Reading,
    SignalDef,
    SignalKind,
    ValueType,
    to_epoch_us,
)
from plantstream.model.signals import UnknownSignalPolicy
from plantstream.store import queries, signal_defs
from plantstream.store.catalog import StoreCatalog
from plantstream.store.partitions import drop_expired, existing_partitions

CATALOG = FixedCatalog(
    {
        **DEFAULT_SIGNALS,
        "running": SignalDef("running", ValueType.BOOL, SignalKind.STATE),
        "mode": SignalDef("mode", ValueType.STATE, SignalKind.STATE, states=("idle", "run")),
        "parts": SignalDef("parts", ValueType.INT64, SignalKind.COUNTER, unit="count"),
    }
)


def run_import(
    *args: str, database_url: str, cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plantstream", "import", *args],
        env={
            **os.environ,
            "PLANTSTREAM_DATABASE_URL": database_url,
            "PLANTSTREAM_REDIS_URL": "redis://127.0.0.1:1/0",  # never used by an import
            "COLUMNS": "200",
            **env,
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _table_state(db: psycopg.Connection) -> tuple[Any, ...]:
    readings = db.execute("SELECT count(*), sum(value) FROM readings").fetchone()
    rollups = db.execute(
        "SELECT count(*), sum(count), sum(sum), sum(area) FROM rollup_1m"
    ).fetchone()
    return readings, rollups


def test_a_wide_csv_in_a_timezone_with_rejects_then_again_changes_nothing(
    database_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    day = (datetime.now(UTC) - timedelta(days=10)).date()
    lines = [
        "ts,temperature,pressure",
        f"{day} 10:00:00,21.5,1.25",
        f"{day} 10:00:10,21.75,",  # an empty cell: no reading
        f"{day} 10:00:20,warm,1.5",  # one bad cell: that reading refused, the other stored
        f"{day}T10:00:30+00:00,22.0,1.75",  # an offset wins over --timezone
        "yesterday,1,1",
        f"{day} 10:00:40,9999,2.0",  # outside temperature's range
    ]
    (tmp_path / "line1.csv").write_text("\n".join(lines) + "\n")
    args = ("line1.csv", "--facility", "plant-01", "--device", "press-1")

    naive = run_import(*args, database_url=database_url, cwd=tmp_path)
    assert naive.returncode == 1, naive.stderr
    assert "rejected timestamp_without_offset: 4" in naive.stdout
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (2,)  # the +00:00 row

    first = run_import(
        *args, "--timezone", "Europe/Berlin", database_url=database_url, cwd=tmp_path
    )
    assert first.returncode == 1, first.stderr
    assert "5 stored" in first.stdout, first.stdout
    assert "2 duplicates" in first.stdout  # the +00:00 row came in the first run
    rows = list(csv.reader((tmp_path / "rejects.csv").read_text().splitlines()))
    assert rows == [
        ["file", "row", "column", "code", "message"],
        ["line1.csv", "3", "temperature", "invalid_reading",
         "temperature takes a number, got 'warm'"],
        ["line1.csv", "5", "ts", "invalid_timestamp", "not a timestamp: 'yesterday'"],
        ["line1.csv", "6", "temperature", "value_out_of_range",
         "temperature must be within -60..1200 degC"],
    ]  # fmt: skip
    assert "empty cells (no reading): 1" in first.stdout
    assert "line1.csv: 100.0%" in first.stderr  # progress: one plain line per chunk off a tty
    # 10:00 in Berlin in that season is 08:00 or 09:00 UTC: the zone decides, not the machine
    offset = (
        datetime(day.year, day.month, day.day, 10, tzinfo=UTC)
        .astimezone(ZoneInfo("Europe/Berlin"))
        .utcoffset()
    )
    assert offset is not None
    stored = db.execute(
        "SELECT r.ts, r.value FROM readings r JOIN sensors s ON s.id = r.sensor_id "
        "WHERE s.metric = 'temperature' ORDER BY r.ts"
    ).fetchall()
    start = datetime(day.year, day.month, day.day, 10, tzinfo=UTC) - offset
    assert [(ts, v) for ts, v in stored] == [
        (start, 21.5),
        (start + timedelta(seconds=10), 21.75),
        (datetime(day.year, day.month, day.day, 10, 0, 30, tzinfo=UTC), 22.0),
    ]
    before = _table_state(db)

    again = run_import(
        *args, "--timezone", "Europe/Berlin", "--json", database_url=database_url, cwd=tmp_path
    )
    summary = json.loads(again.stdout)
    assert (summary["stored"], summary["duplicates"]) == (0, 7)
    assert _table_state(db) == before
    counters = dict(db.execute("SELECT counter, value FROM processor_counters").fetchall())
    assert counters["history_stored"] == 7
    assert counters["history_duplicate"] == 2 + 7


def test_a_long_parquet_file_by_mapping_file_three_years_back_rolls_up_exactly(
    database_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    signal_defs.upsert_signals(
        conn=db,
        facility="plant-01",
        signals=[
            SignalDef(
                "parts", ValueType.INT64, SignalKind.COUNTER, unit="count", low=0, high=WRAP,
                wrap=WRAP,
            )
        ],
    )  # fmt: skip
    base = datetime.now(UTC).replace(hour=22, minute=0, second=0, microsecond=0) - timedelta(
        days=3 * 365
    )
    t0 = int(base.timestamp())
    gauge = [(t0 + 7 * i + (i % 5), round(20 + (i % 37) * 0.5, 2)) for i in range(4000)]
    # a counter that climbs, wraps at 2**16 and is reset now and then
    counter = [(t0 + 11 * i, float((i * 997) % WRAP if i % 900 else 3)) for i in range(2500)]
    series = [(t, "temperature", v) for t, v in gauge] + [(t, "parts", v) for t, v in counter]
    series.sort()
    table = pa.table(
        {
            # naive: read in the mapping's zone
            "Zeit": pa.array(
                [datetime.fromtimestamp(t, UTC).replace(tzinfo=None) for t, _, _ in series],
                type=pa.timestamp("us"),
            ),
            "Maschine": ["press-7"] * len(series),
            "Signal": [m for _, m, _ in series],
            "Wert": [v for _, _, v in series],
        }
    )
    pq.write_table(table, tmp_path / "export.parquet", row_group_size=700)
    (tmp_path / "map.yaml").write_text(
        "facility: plant-01\nts_column: Zeit\ntimezone: UTC\ndevice_column: Maschine\n"
        "metric_column: Signal\nvalue_column: Wert\n"
    )
    done = run_import(
        "export.parquet", "--mapping", "map.yaml", "--json",
        database_url=database_url, cwd=tmp_path,
        PLANTSTREAM_RAW_RETENTION_DAYS="1200", PLANTSTREAM_HISTORY_CHUNK_ROWS="1000",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"stored": 6500' in done.stdout
    days = {(base + timedelta(seconds=7 * 4000 * f)).strftime("%Y%m%d") for f in (0, 0.5, 1)}
    assert {f"readings_{d}" for d in days} <= existing_partitions(db)
    for metric, points, is_counter in (("temperature", gauge, False), ("parts", counter, True)):
        for step, width in (("1m", 60), ("1h", 3600), ("1d", 86400)):
            got = queries.series(
                db,
                facility="plant-01",
                device="press-7",
                metric=metric,
                start=base - timedelta(days=1),
                end=base + timedelta(days=2),
                step=step,
            )
            want = reference(points, width, counter=is_counter)
            assert [int(p["ts"].timestamp()) for p in got] == [w["ts"] for w in want], step
            for p, w in zip(got, want, strict=True):
                assert p["count"] == w["count"]
                assert (p["min"], p["max"], p["first"], p["last"]) == (
                    w["min"], w["max"], w["first"], w["last"],
                )  # fmt: skip
                assert abs(p["twa"] - w["twa"]) < 1e-6, (step, p, w)
                if is_counter:
                    assert abs(p["increase"] - w["increase"]) < 1e-6, (step, p, w)


def _importer(database_url: str, tmp_path: Path, **store: Any) -> tuple[FileImporter, Any]:
    pool = ConnectionPool(
        database_url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True
    )
    out = (tmp_path / "rejects.csv").open("w", newline="")
    importer = FileImporter(
        pool=pool,
        store=HistoryStore(catalog=CATALOG, **store),
        chunk_rows=1000,
        max_future_us=600_000_000,
        rejects=RejectsFile(out),
    )
    return importer, (pool, out)


def test_retention_refuses_what_it_would_drop_unless_told_and_then_says_so(
    database_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old, recent = now - timedelta(days=40), now - timedelta(days=5)
    (tmp_path / "h.csv").write_text(
        f"ts,temperature\n{old.isoformat()},20.0\n{recent.isoformat()},21.0\n"
    )
    mapping = ColumnMapping(facility="plant-01", device="m1").checked()
    importer, (pool, out) = _importer(database_url, tmp_path, retention_days=30)
    try:
        summary = importer.import_file(tmp_path / "h.csv", mapping)
        out.flush()
        assert (summary.stored, dict(summary.rejected)) == (1, {"beyond_retention": 1})
        assert "older than the raw retention of 30 days" in (tmp_path / "rejects.csv").read_text()
    finally:
        pool.close()
        out.close()
    told, (pool, out) = _importer(database_url, tmp_path, retention_days=30, past_retention=True)
    try:
        summary = told.import_file(tmp_path / "h.csv", mapping)
        assert (summary.stored, summary.duplicates, summary.past_retention) == (1, 1, 1)
    finally:
        pool.close()
        out.close()
    dropped = drop_expired(db, retention_days=30)
    assert f"readings_{old:%Y%m%d}" in dropped
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (1,)
    # the rollups of what the retention job dropped stay
    assert db.execute("SELECT sum(count) FROM rollup_1d").fetchone() == (2,)


def test_typed_signals_and_dst_choices_from_a_csv(
    database_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    (tmp_path / "t.csv").write_text(
        "ts,running,mode,parts\n"
        "2025-10-26 02:30:00,true,run,18446744\n"  # Berlin repeats 02:30 that night
        "2025-10-26 03:30:00,false,idle,9007199254740993\n"  # beyond 2**53: kept exact
        "2025-10-26 04:30:00,maybe,stopped,12.5\n"
    )
    mapping = ColumnMapping(
        facility="plant-01", device="m1", timezone="Europe/Berlin", ambiguous="latest"
    ).checked()
    importer, (pool, out) = _importer(database_url, tmp_path, retention_days=3650)
    try:
        summary = importer.import_file(tmp_path / "t.csv", mapping)
    finally:
        pool.close()
        out.close()
    assert summary.stored == 6
    assert dict(summary.rejected) == {"invalid_reading": 2, "unknown_state": 1}
    rows = {
        (metric, ts): typed
        for metric, ts, *typed in db.execute(
            "SELECT s.metric, r.ts, r.value, r.value_int, r.value_text FROM readings r "
            "JOIN sensors s ON s.id = r.sensor_id"
        ).fetchall()
    }
    first = datetime(2025, 10, 26, 1, 30, tzinfo=UTC)  # the later 02:30, in winter time
    later = first + timedelta(hours=1)
    assert len(rows) == 6
    assert (rows[("mode", first)][2], rows[("mode", later)][2]) == ("run", "idle")
    assert rows[("parts", first)][:2] == [18446744.0, 18446744]
    assert rows[("parts", later)][1] == 9007199254740993  # exact beyond 2**53
    assert (rows[("running", first)][0], rows[("running", later)][0]) == (1.0, 0.0)


def test_a_semicolon_csv_with_a_byte_order_mark_and_crlf_lines(
    database_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    at = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    later = (at + timedelta(minutes=1)).isoformat()
    text = f"ts;temperature\r\n{at.isoformat()};21.5\r\n{later};21,5\r\n"
    (tmp_path / "eu.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    mapping = ColumnMapping(facility="plant-01", device="m1", delimiter=";").checked()
    importer, (pool, out) = _importer(database_url, tmp_path, retention_days=30)
    try:
        summary = importer.import_file(tmp_path / "eu.csv", mapping)
    finally:
        pool.close()
        out.close()
    assert (summary.stored, dict(summary.rejected)) == (1, {"invalid_reading": 1})
    assert "got '21,5'" in (tmp_path / "rejects.csv").read_text()  # a decimal comma is refused
    assert db.execute("SELECT ts, value FROM readings").fetchall() == [(at, 21.5)]


def test_history_between_stored_readings_is_repaired_before_the_import_ends(
    database_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """Two files whose readings interleave: the second falls between the first's stored
    readings (dirty buckets), and the import recomputes them before it answers."""
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=20)
    t0 = int(base.timestamp())
    points = [(t0 + 5 * i, float(20 + (i * 7) % 13)) for i in range(3000)]
    for name, part in (("even.csv", points[0::2]), ("odd.csv", points[1::2])):
        with (tmp_path / name).open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["time", "temperature"])
            for t, v in part:
                writer.writerow([datetime.fromtimestamp(t, UTC).isoformat(), v])
    done = run_import(
        "even.csv", "odd.csv", "--facility", "plant-01", "--device", "press-3",
        "--ts-column", "time", "--json", database_url=database_url, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["stored"] == 3000
    assert summary["rollup_buckets_repaired"] > 0  # the odd file did fall between
    for table in ("rollup_1m", "rollup_1h", "rollup_1d"):
        assert db.execute(f"SELECT count(*) FROM {table} WHERE dirty").fetchone() == (0,)
    for step, width in (("1m", 60), ("1h", 3600), ("1d", 86400)):
        got = queries.series(
            db, facility="plant-01", device="press-3", metric="temperature",
            start=base - timedelta(days=1), end=base + timedelta(days=1), step=step,
        )  # fmt: skip
        want = reference(points, width, counter=False)
        assert [p["count"] for p in got] == [w["count"] for w in want], step
        for p, w in zip(got, want, strict=True):
            assert not p.get("pending"), (step, p)
            assert abs(p["twa"] - w["twa"]) < 1e-6, (step, p, w)


def test_an_import_under_register_records_its_new_signals_for_review(
    database_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """``plantstream import`` holds the register policy as live ingest does: a new column is
    stored and listed as unclassified for an admin, never taken unseen."""
    signal_defs.set_policy(conn=db, facility="plant-01", policy=UnknownSignalPolicy.REGISTER)
    at = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    (tmp_path / "h.csv").write_text(f"ts,temperature,coolant_flow\n{at.isoformat()},21.5,3.25\n")
    done = run_import(
        "h.csv", "--facility", "plant-01", "--device", "m1", database_url=database_url, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 stored" in done.stdout, done.stdout
    assert signal_defs.unclassified(conn=db, facility="plant-01") == ["coolant_flow"]


def test_a_kind_changed_by_a_model_apply_is_rolled_up_as_the_new_kind(
    database_url: str, db: psycopg.Connection
) -> None:
    """The history store's kind cache follows the catalog: a signal re-declared a counter in
    another process is rolled up as a counter once the catalog's ttl has passed."""
    signal_defs.upsert_signals(conn=db, facility="plant-01", signals=[SignalDef("flow")])
    now = [0.0]
    pool = ConnectionPool(
        database_url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True
    )
    try:
        store = HistoryStore(
            catalog=StoreCatalog(pool, ttl=5.0, clock=lambda: now[0]), retention_days=30
        )
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
        batch = ParsedBatch("plant-01", [Reading("m1", "flow", to_epoch_us(start), 1.0)], [])
        store_history_batch(pool, store, batch)
        signal_defs.upsert_signals(
            conn=db,
            facility="plant-01",
            signals=[SignalDef("flow", kind=SignalKind.COUNTER, unit="count")],
        )
        now[0] += 6.0  # past the catalog's ttl
        later = start + timedelta(hours=1)
        batch = ParsedBatch("plant-01", [Reading("m1", "flow", to_epoch_us(later), 2.0)], [])
        store_history_batch(pool, store, batch)
    finally:
        pool.close()
    kinds = db.execute("SELECT bucket, kind FROM rollup_1m ORDER BY bucket").fetchall()
    assert [k for _, k in kinds] == [0, 1]  # gauge, then counter
