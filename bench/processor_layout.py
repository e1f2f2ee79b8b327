"""The processor as ``serve processor`` runs it with ``PLANTSTREAM_PROCESSOR_PROCESSES=N``:
N processor processes over the same stream, each leasing its share of the shards, against
the binary-COPY limit of the same rows measured in the same run (``bench/processor.py``).

Each round pre-fills a fresh stream, starts N processes that take their share of the
leases before the clock starts (what a long-running deployment has: start-up and lease
hand-over are not throughput), then times until every reading is stored and, with
``--detection``, judged by each process's detection engine (in process, as ``serve`` runs
it). With one process this is ``bench/processor.py``'s measurement in a child process.
Results go to the ``processes`` section of bench/results/processor.json.

    python bench/processor_layout.py --processes 1 2 --detection --readings 400000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

import psycopg
import redis
from processor import (
    RESULTS,
    TimedSink,
    _stored_buffer,
    copy_limit,
    prefill,
)
from pydantic import SecretStr

from plantstream.detect import DetectionEngine
from plantstream.processor import DetectionSink, Processor, ProcessorConfig, RedisLatestSink
from plantstream.processor.sinks.base import PostCommitSink
from plantstream.processor.sinks.process import ProcessSink
from plantstream.runtime.processing import DetectionInChild
from plantstream.settings import Settings
from plantstream.store.partitions import ensure_window
from plantstream.stream import RedisStream
from plantstream.testing import fresh_services

SHARDS = 4
READY_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 600.0


def _child(
    database_url: str,
    redis_url: str,
    stream_name: str,
    *,
    share: int,
    detection: bool,
    detection_process: bool,
    batch_records: int,
    ready: Event,
    go: Event,
    stop: Event,
    done: Synchronized[int],
    cpu: Synchronized[float],
) -> None:
    client = redis.Redis.from_url(redis_url)
    stream = RedisStream(client, stream_name, retention_hours=0)
    sinks: list[PostCommitSink] = [RedisLatestSink(client)]
    engine = None
    timed = None
    detached = None
    if detection_process:  # each processor's detection in a child of its own (ps-detect)
        settings = Settings(
            database_url=SecretStr(database_url),
            redis_url=SecretStr(redis_url),
            log_level="WARNING",
        )
        detached = ProcessSink(DetectionInChild(settings), log_level="WARNING")
        sinks.append(detached)
    elif detection:
        engine = DetectionEngine(database_url=database_url, redis_client=client)
        timed = TimedSink(DetectionSink(engine))
        sinks.append(timed)
    processor = Processor(
        database_url=database_url,
        stream=stream,
        config=ProcessorConfig(stream_name=stream_name, batch_records=batch_records),
        sinks=sinks,
    )
    # take this process's share of the leases first (stealing from a process that took
    # more), and keep renewing while the others take theirs
    with psycopg.connect(database_url, autocommit=True) as conn:
        processor.sinks.catch_up(conn)  # a detection child starts before the clock does
    while not go.is_set():
        processor.rebalance()
        if len(processor.leases.owned) == share:
            ready.set()
        go.wait(0.05)
    while not stop.is_set():
        worked = processor.step()
        if detached is not None:
            # stored and judged: counted once the child has acknowledged all it was handed
            if not worked and detached.flush(0.02):
                done.value = processor.processed
            cpu.value = detached.cpu_s
        else:
            done.value = processor.processed
        if not worked:
            processor.rebalance()
            stop.wait(0.002)
        if timed is not None:
            cpu.value = timed.cpu_s
    processor.shutdown()
    if engine is not None:
        engine.close()


def run_round(
    database_url: str,
    redis_url: str,
    args: argparse.Namespace,
    round_no: int,
    *,
    processes: int,
    detection: bool,
    detection_process: bool = False,
) -> tuple[float, int, float]:
    """One pre-filled stream drained by ``processes`` processes: (readings/s, readings,
    detection CPU s per million readings)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE readings, rollup_1m, rollup_1h, shard_leases, processor_counters, "
            "dead_letters"
        )
        ensure_window(conn, past_days=8)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    stream = RedisStream(client, f"bench-layout-{round_no}", retention_hours=0)
    stream.create(SHARDS)
    produced = prefill(stream, args.readings, facilities=args.facilities, machines=args.machines)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    ctx = mp.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    readies = [ctx.Event() for _ in range(processes)]
    dones = [ctx.Value("q", 0) for _ in range(processes)]
    cpus = [ctx.Value("d", 0.0) for _ in range(processes)]
    if SHARDS % processes:
        raise ValueError(f"{SHARDS} shards do not split evenly over {processes} processes")
    share = SHARDS // processes
    children = [
        ctx.Process(
            target=_child,
            args=(database_url, redis_url, stream.name),
            kwargs={
                "share": share,
                "detection": detection,
                "detection_process": detection_process,
                "batch_records": args.batch_records,
                "ready": readies[i],
                "go": go,
                "stop": stop,
                "done": dones[i],
                "cpu": cpus[i],
            },
            name=f"bench-processor-{i}",
        )
        for i in range(processes)
    ]
    for child in children:
        child.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for ready in readies:
            if not ready.wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeError("a processor did not take its share of the leases")
        started = time.perf_counter()
        go.set()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while sum(d.value for d in dones) < produced:
            if time.monotonic() > deadline or not all(c.is_alive() for c in children):
                raise RuntimeError("the processors did not drain the stream")
            time.sleep(0.002)
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()
    with psycopg.connect(database_url, autocommit=True) as conn:
        (stored,) = conn.execute("SELECT count(*) FROM readings").fetchone() or (0,)
    if stored != produced:  # every reading once: nothing lost, nothing twice
        raise RuntimeError(f"{stored} readings stored of {produced}")
    return produced / seconds, produced, sum(c.value for c in cpus) / produced * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--readings", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--facilities", type=int, default=4)
    parser.add_argument("--machines", type=int, default=12)
    parser.add_argument("--batch-records", type=int, default=1000)
    parser.add_argument("--detection", action="store_true", help="detection on in every process")
    parser.add_argument(
        "--detection-process",
        action="store_true",
        help="with --detection: each processor's detection in a child process (ps-detect)",
    )
    args = parser.parse_args()
    rates: dict[int, list[float]] = {n: [] for n in args.processes}
    det_cpu: dict[int, list[float]] = {n: [] for n in args.processes}
    copies: list[float] = []
    with fresh_services("plantstream_bench_processor") as (database_url, redis_url):
        for round_no in range(args.rounds):
            for n in args.processes:  # alternately, so drift on the machine hits each alike
                rate, produced, cpu = run_round(
                    database_url,
                    redis_url,
                    args,
                    round_no * 100 + n,
                    processes=n,
                    detection=args.detection,
                    detection_process=args.detection and args.detection_process,
                )
                rates[n].append(rate)
                det_cpu[n].append(cpu)
            with psycopg.connect(database_url, autocommit=True) as conn:
                copies.append(copy_limit(conn, _stored_buffer(conn, produced), produced))
            print(
                f"round {round_no + 1}: "
                + ", ".join(f"{n} process(es) {rates[n][-1]:,.0f}/s" for n in args.processes)
                + f"; COPY limit {copies[-1]:,.0f} rows/s"
                + (" (detection on)" if args.detection else "")
            )
    copy_rate = statistics.median(copies)
    section = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/processor_layout.py --processes "
        + " ".join(str(n) for n in args.processes)
        + (" --detection" if args.detection else "")
        + (" --detection-process" if args.detection and args.detection_process else "")
        + f" --readings {args.readings} --rounds {args.rounds}",
        "readings_per_round": produced,
        "detection": args.detection,
        "detection_process": args.detection and args.detection_process,
        "copy_limit_rows_per_s": round(copy_rate),
        "by_processes": {
            str(n): {
                "readings_per_s": round(statistics.median(rates[n])),
                "ratio_to_copy_limit": round(statistics.median(rates[n]) / copy_rate, 3),
                "detection_cpu_s_per_million_readings": round(statistics.median(det_cpu[n]), 3),
                "samples": [round(r) for r in rates[n]],
            }
            for n in args.processes
        },
        "copy_limit_samples": [round(c) for c in copies],
    }
    path = RESULTS / "processor.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing["processes_detection" if args.detection else "processes"] = section
    path.write_text(json.dumps(existing, indent=2) + "\n")
    for n in args.processes:
        ratio = section["by_processes"][str(n)]["ratio_to_copy_limit"]
        print(f"{n} process(es) / COPY limit = {ratio:.2f}")
    print(f"written to {Path(path)}")


if __name__ == "__main__":
    main()
