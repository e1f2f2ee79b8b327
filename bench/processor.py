"""Processor throughput against the COPY limit and the naive baseline, on the same database.

Pre-fills the stream with simulator readings, drains it with the real processor (stream ->
PostgreSQL raw + rollups + checkpoint -> Redis), then times (a) a binary COPY of the same
rows prepared in memory into an identical table and (b) one INSERT and one commit per
reading. Writes bench/results/processor.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import redis

from plantstream.detect import DetectionEngine
from plantstream.model import Reading, now_us
from plantstream.processor import DetectionSink, Processor, ProcessorConfig, RedisLatestSink
from plantstream.processor.rows import Columns
from plantstream.processor.sinks.base import PostCommitSink
from plantstream.processor.writer import readings_copy_buffer
from plantstream.simulate import Plant
from plantstream.store.partitions import ensure_window
from plantstream.stream import RedisStream, pack_readings
from plantstream.testing import fresh_services, write_result

RESULTS = Path(__file__).parent / "results"

_TWIN = """
CREATE TABLE {name} (
    sensor_id integer NOT NULL, ts timestamptz NOT NULL, value double precision NOT NULL,
    quality smallint NOT NULL DEFAULT 0, PRIMARY KEY (sensor_id, ts)
) PARTITION BY RANGE (ts)
"""


def prefill(
    stream: RedisStream, total: int, *, facilities: int, machines: int, request_size: int = 500
) -> int:
    """Simulator readings as gateways send them: requests of about ``request_size`` readings."""
    plant = Plant(seed=42, facilities=facilities, machines=machines)
    per_second = sum(len(m.signals) for m in plant.machines)
    seconds = -(-total // per_second)
    start = now_us() / 1e6 - seconds - 60
    received = now_us()
    produced = 0
    pending = []
    requests: dict[str, list[Reading]] = {}
    for s in range(seconds):
        for r in plant.sample(start + s):
            requests.setdefault(r.facility, []).append(
                Reading(r.device, r.metric, int(r.ts * 1e6), r.value, 0)
            )
        for facility, readings in list(requests.items()):
            if len(readings) >= request_size or s == seconds - 1:
                pending.extend(pack_readings(facility, received, readings))
                produced += len(readings)
                del requests[facility]
        if len(pending) >= 2000:
            stream.put(pending)
            pending = []
    stream.put(pending)
    return produced


def twin_table(conn: psycopg.Connection, name: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(_TWIN.format(name=name))
    for partition, bounds in conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'readings'::regclass"
    ).fetchall():
        conn.execute(f"CREATE TABLE {name}_{partition} PARTITION OF {name} {bounds}")


def run_processor(
    database_url: str,
    client: redis.Redis,
    args: argparse.Namespace,
    round_no: int,
    *,
    detection: bool = False,
) -> tuple[float, int]:
    """Prefill a fresh stream, then drain it with the processor; return (readings/s, count)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE readings, rollup_1m, rollup_1h, shard_leases, processor_counters, "
            "dead_letters"
        )
        ensure_window(conn, past_days=8)
    client.flushdb()
    stream = RedisStream(client, f"bench-{round_no}", retention_hours=0)
    stream.create(4)
    produced = prefill(stream, args.readings, facilities=args.facilities, machines=args.machines)
    sinks: list[PostCommitSink] = [RedisLatestSink(client)]
    engine = None
    if detection:  # the detection engine as `serve processor` runs it: after Redis latest
        engine = DetectionEngine(database_url=database_url, redis_client=client)
        sinks.append(DetectionSink(engine))
    processor = Processor(
        database_url=database_url,
        stream=stream,
        config=ProcessorConfig(stream_name=stream.name, batch_records=args.batch_records),
        sinks=sinks,
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # every phase starts with no dirty pages to flush
    started = time.perf_counter()
    while processor.processed < produced:
        if not processor.step():
            processor.rebalance()
    seconds = time.perf_counter() - started
    processor.shutdown()
    if engine is not None:
        engine.close()
    return produced / seconds, produced


def copy_limit(conn: psycopg.Connection, buffer: bytes, rows: int) -> float:
    """Binary COPY of rows prepared in memory into an identical, empty table."""
    twin_table(conn, "bench_copy")
    conn.execute("CHECKPOINT")
    started = time.perf_counter()
    with (
        conn.transaction(),
        conn.cursor() as cur,
        cur.copy("COPY bench_copy (sensor_id, ts, value, quality) FROM STDIN BINARY") as copy,
    ):
        copy.write(buffer)
    return rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--naive-sample", type=int, default=3000)
    parser.add_argument("--facilities", type=int, default=4)
    parser.add_argument("--machines", type=int, default=12)
    parser.add_argument("--batch-records", type=int, default=1000)
    parser.add_argument(
        "--detection",
        action="store_true",
        help="also drain each round with detection on; writes the 'detection' section only",
    )
    args = parser.parse_args()
    if args.detection:
        detection_main(args)
        return

    with fresh_services("plantstream_bench_processor") as (database_url, redis_url):
        client = redis.Redis.from_url(redis_url)
        processor_rates, copy_rates = [], []
        for round_no in range(args.rounds):
            rate, produced = run_processor(database_url, client, args, round_no)
            processor_rates.append(rate)
            with psycopg.connect(database_url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT sensor_id, (extract(epoch FROM ts) * 1000000)::bigint, value, "
                    "quality FROM readings"
                ).fetchall()
                assert len(rows) == produced, (len(rows), produced)
                sensor_id, ts_us, value, quality = (list(c) for c in zip(*rows, strict=True))
                buffer = readings_copy_buffer(
                    Columns(
                        np.array(sensor_id, np.int32),
                        np.array(ts_us, np.int64),
                        np.array(value, np.float64),
                        np.array(quality, np.int16),
                        np.zeros(len(rows), np.int32),
                        np.zeros(len(rows), np.int64),
                    )
                )
                copy_rates.append(copy_limit(conn, buffer, produced))
            print(
                f"round {round_no + 1}: processor {processor_rates[-1]:,.0f} readings/s, "
                f"COPY limit {copy_rates[-1]:,.0f} rows/s ({produced:,} readings)"
            )

        with psycopg.connect(database_url, autocommit=True) as conn:
            twin_table(conn, "bench_naive")
            sample = rows[: args.naive_sample]
            started = time.perf_counter()
            for sensor_id_, ts_us_, value_, quality_ in sample:
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO bench_naive VALUES "
                        "(%s, to_timestamp(%s::double precision / 1e6), %s, %s)",
                        (sensor_id_, ts_us_, value_, quality_),
                    )
            naive_rate = len(sample) / (time.perf_counter() - started)
            print(f"naive INSERT+commit: {naive_rate:,.0f} rows/s")

        processor_rate = statistics.median(processor_rates)
        copy_rate = statistics.median(copy_rates)
        result = {
            "readings_per_round": produced,
            "rounds": args.rounds,
            "batch_records": args.batch_records,
            "processor_readings_per_s": round(processor_rate),
            "copy_limit_rows_per_s": round(copy_rate),
            "naive_rows_per_s": round(naive_rate),
            "ratio_to_copy_limit": round(processor_rate / copy_rate, 3),
            "ratio_to_naive": round(processor_rate / naive_rate, 1),
            "samples": {
                "processor_readings_per_s": [round(r) for r in processor_rates],
                "copy_limit_rows_per_s": [round(r) for r in copy_rates],
            },
            "goal": {"ratio_to_copy_limit": 0.6, "ratio_to_naive": 50},
        }
        path = write_result("processor", result, RESULTS)
        print(
            f"processor / COPY limit = {result['ratio_to_copy_limit']:.2f} (goal >= 0.60), medians"
        )
        print(f"processor / naive      = {result['ratio_to_naive']:.1f}x (goal >= 50x)")
        print(f"written to {path}")


def detection_main(args: argparse.Namespace) -> None:
    """Per round, alternately: the processor without detection, with it, and the COPY limit
    of the same rows; the ratios go into the ``detection`` section of processor.json (the
    rest of that file is left as it is)."""
    with fresh_services("plantstream_bench_processor") as (database_url, redis_url):
        client = redis.Redis.from_url(redis_url)
        plain, detecting, copies = [], [], []
        for round_no in range(args.rounds):
            plain.append(run_processor(database_url, client, args, 2 * round_no)[0])
            rate, produced = run_processor(
                database_url, client, args, 2 * round_no + 1, detection=True
            )
            detecting.append(rate)
            with psycopg.connect(database_url, autocommit=True) as conn:
                copies.append(copy_limit(conn, _stored_buffer(conn, produced), produced))
            print(
                f"round {round_no + 1}: processor {plain[-1]:,.0f}/s, with detection "
                f"{detecting[-1]:,.0f}/s, COPY limit {copies[-1]:,.0f} rows/s"
            )
    copy_rate = statistics.median(copies)
    section = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": "shared, busy",
        "command": f"python bench/processor.py --detection --readings {args.readings} "
        f"--rounds {args.rounds}",
        "readings_per_round": produced,
        "processor_readings_per_s": round(statistics.median(plain)),
        "processor_with_detection_readings_per_s": round(statistics.median(detecting)),
        "copy_limit_rows_per_s": round(copy_rate),
        "ratio_to_copy_limit": round(statistics.median(plain) / copy_rate, 3),
        "ratio_with_detection_to_copy_limit": round(statistics.median(detecting) / copy_rate, 3),
        "samples": {
            "processor": [round(r) for r in plain],
            "with_detection": [round(r) for r in detecting],
            "copy_limit": [round(r) for r in copies],
        },
        "goal": {"ratio_with_detection_to_copy_limit": 0.5},
    }
    path = RESULTS / "processor.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing["detection"] = section
    path.write_text(json.dumps(existing, indent=2) + "\n")
    print(
        f"with detection / COPY limit = {section['ratio_with_detection_to_copy_limit']:.2f} "
        f"(goal >= 0.5); written to {path}"
    )


def _stored_buffer(conn: psycopg.Connection, produced: int) -> bytes:
    rows = conn.execute(
        "SELECT sensor_id, (extract(epoch FROM ts) * 1000000)::bigint, value, quality FROM readings"
    ).fetchall()
    assert len(rows) == produced, (len(rows), produced)
    sensor_id, ts_us, value, quality = (list(c) for c in zip(*rows, strict=True))
    return readings_copy_buffer(
        Columns(
            np.array(sensor_id, np.int32),
            np.array(ts_us, np.int64),
            np.array(value, np.float64),
            np.array(quality, np.int16),
            np.zeros(len(rows), np.int32),
            np.zeros(len(rows), np.int64),
        )
    )


if __name__ == "__main__":
    main()
