"""Soak: the laptop stack offered twice the rate it sustains, for minutes, on loopback.

The stack is ``plantstream serve all`` (ingest, processor and query API in one process, the
way ``plantstream demo`` runs) on the embedded PostgreSQL and Redis, with default settings.

1. Calibrate: closed-loop clients post batches of 500 unique readings as fast as answers
   come back -> the rate the stack sustains here, the *target*.
2. Soak: open-loop clients schedule requests at twice the target for ``--seconds``; each
   answer is tallied by status and code. The server's resident memory and Redis'
   ``used_memory`` are sampled once a second.
3. Drain: once the load stops, wait until the processor has stored every reading, then
   balance the books: readings answered 202 == rows in ``readings`` == the server's own
   ``plantstream_ingest_readings`` accepted counter.

Writes bench/results/soak.json. ``--check`` exits 1 when an invariant fails (no 5xx or
dropped connection, 429s while overloaded, memory flat, books balanced); the test suite
runs it that way for a shorter time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from plantstream.local.ports import free_port
from plantstream.store.keys import Role, create_key
from plantstream.testing import (
    BATCH,
    BENCH_SERVER_SETTINGS,
    FACILITY,
    SERVER_SECRET,
    fresh_services,
    plantstream_server,
    run_clients,
    server_env,
    wait_for_readings,
    write_result,
)

RESULTS = Path(__file__).parent / "results"

# the generous bounds a flat server stays within: allocator slack, caches warming up
RSS_GROWTH_LIMIT = 1.25
RSS_GROWTH_SLACK_MB = 32


class Sampler(threading.Thread):
    """Once a second: the server's resident memory (MiB) and Redis' used_memory (MiB)."""

    def __init__(self, pid: int, redis_url: str) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.redis = redis.Redis.from_url(redis_url)
        self.rss_mb: list[float] = []
        self.redis_mb: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            status = Path(f"/proc/{self.pid}/status").read_text()
            rss_kb = next(int(line.split()[1]) for line in status.splitlines() if "VmRSS" in line)
            self.rss_mb.append(rss_kb / 1024)
            self.redis_mb.append(int(self.redis.info("memory")["used_memory"]) / 2**20)


def server_accepted(url: str) -> int:
    """The server's own count of readings it answered 202 for."""
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("plantstream_ingest_readings_total{") and 'outcome="accepted"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _env(database_url: str, redis_url: str) -> dict[str, str]:
    return server_env(
        port=free_port(), database_url=database_url, redis_url=redis_url, **BENCH_SERVER_SETTINGS
    )


def soak(*, seconds: float, calibrate_seconds: float, clients: int) -> dict[str, Any]:
    with fresh_services("plantstream_bench_soak") as (database_url, redis_url):
        with psycopg.connect(database_url, autocommit=True) as conn:
            key, _ = create_key(
                conn, server_secret=SERVER_SECRET.encode(), role=Role.INGEST, facility=FACILITY
            )
        with plantstream_server("all", env=_env(database_url, redis_url)) as (url, proc):
            calibration = run_clients(
                url,
                key,
                first_id=0,
                count=clients,
                seconds=calibrate_seconds,
                rate=None,
                connections=1,
            )
            target = calibration["accepted"] / calibrate_seconds
            sampler = Sampler(proc.pid, redis_url)
            sampler.start()
            load = run_clients(
                url,
                key,
                first_id=100,
                count=clients,
                seconds=seconds,
                rate=2 * target / BATCH,
                connections=64,
            )
            sampler.done.set()
            sampler.join()
            accepted = calibration["accepted"] + load["accepted"]
            stored, drained_s = wait_for_readings(database_url, accepted, timeout=300, interval=0.5)
            counted = server_accepted(url)
    third = max(1, len(sampler.rss_mb) // 3)
    early, late = sampler.rss_mb[:third], sampler.rss_mb[-third:]
    return {
        "batch_size": BATCH,
        "clients": clients,
        "target_readings_per_s": round(target),
        "offered_readings_per_s": round(2 * target),
        "calibration": calibration,
        "soak": load,
        "accepted_readings_per_s": round(load["accepted"] / seconds),
        "books": {
            "answered_202": accepted,
            "stored_rows": stored,
            "server_counted": counted,
            "drain_seconds": round(drained_s, 1),
        },
        "memory_mb": {
            "server_rss_first_third_median": round(statistics.median(early), 1),
            "server_rss_last_third_max": round(max(late), 1),
            "server_rss_max": round(max(sampler.rss_mb), 1),
            "redis_used_start": round(sampler.redis_mb[0], 1),
            "redis_used_end": round(sampler.redis_mb[-1], 1),
            "server_rss_samples": [round(v, 1) for v in sampler.rss_mb],
        },
    }


def failures(result: dict[str, Any]) -> list[str]:
    """The invariants a user relies on under overload, as readable failures."""
    problems = []
    answers = {**result["calibration"]["answers"], **result["soak"]["answers"]}
    bad = {k: v for k, v in answers.items() if not k.startswith(("202", "429"))}
    if bad:
        problems.append(f"answers other than 202/429: {bad}")
    if result["soak"]["answers"].get("429:overloaded", 0) == 0:
        problems.append("no 429 overloaded at twice the sustained rate: requests were queued")
    books = result["books"]
    if not books["answered_202"] == books["stored_rows"] == books["server_counted"]:
        problems.append(f"books do not balance: {books}")
    if result["calibration"]["rejected"] or result["soak"]["rejected"]:
        problems.append("valid readings were rejected")
    memory = result["memory_mb"]
    limit = memory["server_rss_first_third_median"] * RSS_GROWTH_LIMIT + RSS_GROWTH_SLACK_MB
    if memory["server_rss_last_third_max"] > limit:
        problems.append(f"server memory grew: {memory['server_rss_samples']}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--calibrate-seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="exit 1 if an invariant fails")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where soak.json goes")
    args = parser.parse_args()

    result = soak(
        seconds=args.seconds, calibrate_seconds=args.calibrate_seconds, clients=args.clients
    )
    problems = failures(result)
    result["problems"] = problems
    path = write_result("soak", result, args.results)
    soaked, books, memory = result["soak"], result["books"], result["memory_mb"]
    print(
        f"target {result['target_readings_per_s']:,} readings/s (sustained, closed loop); "
        f"offered {result['offered_readings_per_s']:,}/s for {args.seconds:.0f} s\n"
        f"answers {soaked['answers']}, not sent (client full) {soaked['skipped']}\n"
        f"accepted {result['accepted_readings_per_s']:,} readings/s; "
        f"202 p99 {soaked['latency_ms']['202']['p99']:.0f} ms, "
        f"429 p99 {soaked['latency_ms']['429']['p99'] or 0:.0f} ms\n"
        f"books: {books}\n"
        f"server RSS {memory['server_rss_first_third_median']} MiB early -> "
        f"{memory['server_rss_last_third_max']} MiB late (max {memory['server_rss_max']}); "
        f"Redis {memory['redis_used_start']} -> {memory['redis_used_end']} MiB\n"
        f"-> {path}"
    )
    for problem in problems:
        print("FAIL:", problem)
    if args.check and problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
