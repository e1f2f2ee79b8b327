"""History import throughput against binary COPY of the same rows, in the same run.

Generates a long-form CSV (ts, device, metric, value: an exported historian table) and the
same rows as Parquet in a temp dir, then on one fresh database times (a) a binary COPY of the
same rows, prepared in memory, into ``readings`` (the limit: no parsing, no validation, no
rollups), (b) ``plantstream import``'s core on the CSV and (c) on the Parquet file, each into
emptied tables, and (d) the CSV imported a second time (every reading a duplicate). Writes
the ``rows_<n>`` section of bench/results/import.json with the command and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from psycopg_pool import ConnectionPool

from plantstream.history import ColumnMapping, FileImporter, HistoryStore
from plantstream.model import DEFAULT_CATALOG
from plantstream.processor.rows import Columns
from plantstream.processor.writer import readings_copy_buffer
from plantstream.store import batches
from plantstream.store.partitions import ensure_partitions
from plantstream.store.schema import migrate
from plantstream.store.sensors import SensorRegistry
from plantstream.testing import create_database, drop_database, write_result

RESULTS = Path(__file__).parent / "results"
METRICS = ("temperature", "pressure")
# emptied and checkpointed between phases: each starts from the same state (no dirty pages of
# the phase before to flush)
_EMPTY = "TRUNCATE readings, rollup_1m, rollup_1h, rollup_1d, reading_conflicts; CHECKPOINT"


def generate(directory: Path, rows: int, devices: int) -> tuple[Path, Path, pa.Table]:
    """The CSV and Parquet files of ``rows`` readings, one per second per sensor."""
    sensors = devices * len(METRICS)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    start_us = int(start.timestamp()) * 1_000_000
    i = np.arange(rows, dtype=np.int64)
    sensor = i % sensors
    ts_us = start_us + (i // sensors) * 1_000_000
    rng = np.random.default_rng(12)
    value = np.round(20 + 5 * np.sin(i / 5000) + rng.normal(0, 0.2, rows), 3)
    device_names = pa.array([f"m{d:04d}" for d in range(devices)])
    table = pa.table(
        {
            "ts": pa.array(ts_us, type=pa.timestamp("us", "UTC")),
            "device": pc.take(device_names, pa.array(sensor // len(METRICS))),
            "metric": pc.take(pa.array(METRICS), pa.array(sensor % len(METRICS))),
            "value": pa.array(value),
        }
    )
    csv_path, parquet_path = directory / "history.csv", directory / "history.parquet"
    text = table.set_column(0, "ts", pc.strftime(table["ts"], format="%Y-%m-%dT%H:%M:%SZ"))
    pcsv.write_csv(text, csv_path)
    pq.write_table(table, parquet_path, row_group_size=1_000_000)
    return csv_path, parquet_path, table


def copy_limit(conn: psycopg.Connection, table: pa.Table, chunk_rows: int) -> float:
    """Seconds to binary-COPY the rows (sensor ids resolved, buffers built beforehand)."""
    keys = [("bench", d, m) for d in table["device"].unique().to_pylist() for m in METRICS]
    ids = SensorRegistry().resolve(conn, keys, catalog=DEFAULT_CATALOG)
    pair = pc.binary_join_element_wise(table["device"], table["metric"], "|").to_numpy(
        zero_copy_only=False
    )
    lookup = {f"{d}|{m}": v for (_, d, m), v in ids.items()}
    unique, inverse = np.unique(pair, return_inverse=True)
    sensor_id = np.array([lookup[u] for u in unique.tolist()], dtype=np.int32)[inverse]
    ts_us = table["ts"].cast(pa.int64()).to_numpy()
    value = table["value"].to_numpy()
    n = len(ts_us)
    day_us = 86_400_000_000
    days = {datetime(1970, 1, 1, tzinfo=UTC).date() + timedelta(days=int(d)) for d in
            np.unique(ts_us // day_us).tolist()}  # fmt: skip
    ensure_partitions(conn, days)
    buffers = []
    for a in range(0, n, chunk_rows):
        b = min(n, a + chunk_rows)
        order = np.lexsort((ts_us[a:b], sensor_id[a:b]))
        rows = Columns(
            sensor_id[a:b][order],
            ts_us[a:b][order],
            value[a:b][order],
            np.zeros(b - a, np.int16),
            np.zeros(b - a, np.int32),
            np.zeros(b - a, np.int64),
        )
        buffers.append(readings_copy_buffer(rows))
    started = time.perf_counter()
    with conn.cursor() as cur:
        for buffer in buffers:
            with conn.transaction():
                batches.copy_parts(cur, "readings", [buffer])
    return time.perf_counter() - started


def import_once(
    pool: ConnectionPool, path: Path, chunk_rows: int
) -> tuple[float, dict[str, object]]:
    store = HistoryStore(catalog=DEFAULT_CATALOG, retention_days=30)
    importer = FileImporter(
        pool=pool, store=store, chunk_rows=chunk_rows, max_future_us=600_000_000
    )
    mapping = ColumnMapping(
        facility="bench", device_column="device", metric_column="metric", value_column="value"
    ).checked()
    started = time.perf_counter()
    summary = importer.import_file(path, mapping)
    return time.perf_counter() - started, summary.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "PLANTSTREAM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    name = f"ps_bench_import_{os.getpid()}"
    url = create_database(args.admin_url, name)
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    out: dict[str, object] = {
        "command": "python bench/import.py " + shlex.join(sys.argv[1:]),
        "machine_note": "shared, busy machine (2 cores, up to 7 engineers)",
        "rows": args.rows,
        "sensors": args.devices * len(METRICS),
        "chunk_rows": args.chunk_rows,
        "load_average_before": [round(x, 2) for x in load_before],
    }
    try:
        with tempfile.TemporaryDirectory(prefix="ps-bench-import-") as tmp:
            started = time.perf_counter()
            csv_path, parquet_path, table = generate(Path(tmp), args.rows, args.devices)
            out["generate_seconds"] = round(time.perf_counter() - started, 1)
            out["csv_bytes"] = csv_path.stat().st_size
            out["parquet_bytes"] = parquet_path.stat().st_size
            with psycopg.connect(url, autocommit=True) as conn:
                copy_s = copy_limit(conn, table, args.chunk_rows)
                del table
                conn.execute(_EMPTY)
            pool = ConnectionPool(
                url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True
            )
            try:
                csv_s, csv_summary = import_once(pool, csv_path, args.chunk_rows)
                again_s, again_summary = import_once(pool, csv_path, args.chunk_rows)
                with pool.connection() as conn:
                    conn.execute(_EMPTY)
                parquet_s, parquet_summary = import_once(pool, parquet_path, args.chunk_rows)
            finally:
                pool.close()
        rows = args.rows
        out.update(
            {
                "copy_limit_rows_per_s": round(rows / copy_s),
                "csv_import_rows_per_s": round(rows / csv_s),
                "parquet_import_rows_per_s": round(rows / parquet_s),
                "csv_reimport_rows_per_s": round(rows / again_s),
                "ratio_csv_to_copy": round(copy_s / csv_s, 3),
                "ratio_parquet_to_copy": round(copy_s / parquet_s, 3),
                "seconds": {
                    "copy": round(copy_s, 1),
                    "csv": round(csv_s, 1),
                    "parquet": round(parquet_s, 1),
                    "csv_again": round(again_s, 1),
                },
                "summaries": {
                    "csv": csv_summary,
                    "csv_again": again_summary,
                    "parquet": parquet_summary,
                },
                "goal": {"ratio_to_copy": 0.5},
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
            }
        )
    finally:
        drop_database(args.admin_url, name)
    existing = RESULTS / "import.json"
    sections = json.loads(existing.read_text()) if existing.exists() else {}
    sections.pop("measured_at", None)
    sections.pop("machine", None)
    sections[f"rows_{args.rows}"] = {"measured_at": datetime.now(UTC).isoformat(), **out}
    write_result("import", sections, RESULTS)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
