"""Ingest throughput and end-to-end latency, over real HTTP on loopback.

1. Throughput: ``plantstream serve ingest`` (one server process) takes POSTs of 500 unique
   readings from asyncio load-generator processes (plantstream.testing.load), each keeping a few
   requests in flight; readings/s accepted.
2. Latency: ``plantstream serve all`` (ingest + processor + API) under a steady 10,000
   readings/s; for sampled requests, the time from the 202 to the value being visible in
   ``/v1/latest``; p50 and p99.
Writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from plantstream.local.ports import free_port
from plantstream.store.keys import Role, create_key
from plantstream.testing import (
    BATCH,
    BENCH_SERVER_SETTINGS,
    CONTENT_TYPES,
    SERVER_SECRET,
    fresh_services,
    percentile,
    plantstream_server,
    run_clients,
    server_env,
    write_result,
)

RESULTS = Path(__file__).parent / "results"
_HAS_PROC = Path("/proc/self/stat").exists()


def _env(database_url: str, redis_url: str) -> dict[str, str]:
    return server_env(
        port=free_port(), database_url=database_url, redis_url=redis_url, **BENCH_SERVER_SETTINGS
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> float:
    """The 1-minute load average now (0 where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def throughput(
    url: str,
    key: str,
    *,
    clients: int,
    connections: int,
    seconds: float,
    fmt: str = "json",
    server_pid: int | None = None,
    first_id: int = 0,
) -> dict[str, float]:
    """Readings/s accepted, and the server's CPU seconds per million readings (on Linux):
    on a shared machine the CPU cost is the steadier figure of the two."""
    cpu_before = _cpu_seconds(server_pid) if server_pid and _HAS_PROC else 0.0
    run = run_clients(
        url,
        key,
        first_id=first_id,
        count=clients,
        seconds=seconds,
        rate=None,
        connections=connections,
        fmt=fmt,
    )
    failed = sum(n for answer, n in run["answers"].items() if answer != "202")
    result = {
        "readings_per_s": run["accepted"] / seconds,
        "failed_requests": failed,
        "load_average_1m": _load(),  # on a shared machine a figure means little without it
    }
    if server_pid and _HAS_PROC and run["accepted"]:
        spent = _cpu_seconds(server_pid) - cpu_before
        result["server_cpu_s_per_million"] = spent / run["accepted"] * 1e6
    return result


def latency(
    url: str, ingest_key: str, read_key: str, *, rate: float, seconds: float, samples: int
) -> dict[str, float]:
    """p50/p99 of 202 -> visible in /v1/latest, under ``rate`` readings/s of background load."""
    client = httpx.Client(timeout=30)
    post_headers = {"Authorization": f"Bearer {ingest_key}", "Content-Type": "application/json"}
    read_headers = {"Authorization": f"Bearer {read_key}"}

    def probe(value: float, timeout: float) -> float:
        ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        marker = orjson.dumps(
            {
                "facility": "plant-01",
                "readings": [{"device": "probe", "metric": "pressure", "ts": ts, "value": value}],
            }
        )
        answer = client.post(url + "/v1/readings", content=marker, headers=post_headers)
        assert answer.status_code == 202, answer.text
        acknowledged = time.perf_counter()
        while time.perf_counter() - acknowledged < timeout:
            latest = client.get(
                url + "/v1/latest?facility=plant-01&device=probe", headers=read_headers
            ).json()["readings"]
            if latest and latest[0]["value"] == value:
                break
            time.sleep(0.002)
        return time.perf_counter() - acknowledged

    probe(-1.0, 30)  # warm-up: the processor has taken its leases and caught up
    background_result: dict[str, Any] = {}

    def background_load() -> None:
        background_result.update(
            run_clients(
                url,
                ingest_key,
                first_id=50,
                count=1,
                seconds=seconds,
                rate=rate / BATCH,
                connections=16,
            )
        )

    background = threading.Thread(target=background_load)
    background.start()
    delays = []
    gap = seconds / (samples + 2)
    time.sleep(gap)  # let the background load settle first
    for n in range(samples):
        time.sleep(gap)
        delays.append(probe(float(n), 10.0))
    background.join()
    delays.sort()
    failed = sum(n for answer, n in background_result["answers"].items() if answer != "202")
    return {
        "background_readings_per_s": background_result["accepted"] / seconds,
        "background_failed_requests": failed,
        "samples": len(delays),
        "p50_ms": statistics.median(delays) * 1000,
        "p99_ms": (percentile(delays, 0.99) or 0.0) * 1000,  # of 100: the 99th
        "max_ms": delays[-1] * 1000,
        "load_average_1m": _load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--connections", type=int, default=4, help="requests in flight each")
    parser.add_argument("--latency-rate", type=float, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument(
        "--format",
        choices=[*CONTENT_TYPES, "both"],
        default="json",
        help="wire format of the throughput bodies; 'both' runs json and msgpack alternately",
    )
    parser.add_argument("--rounds", type=int, default=1, help="throughput runs per format")
    parser.add_argument(
        "--throughput-only", action="store_true", help="skip the latency phase (serve all)"
    )
    args = parser.parse_args()
    formats = list(CONTENT_TYPES) if args.format == "both" else [args.format]

    with fresh_services("plantstream_bench_ingest") as (database_url, redis_url):
        with psycopg.connect(database_url, autocommit=True) as conn:
            ingest_key, _ = create_key(
                conn, server_secret=SERVER_SECRET.encode(), role=Role.INGEST, facility="plant-01"
            )
            read_key, _ = create_key(
                conn, server_secret=SERVER_SECRET.encode(), role=Role.READ, facility="plant-01"
            )
        runs: dict[str, list[dict[str, float]]] = {fmt: [] for fmt in formats}
        with plantstream_server("ingest", env=_env(database_url, redis_url)) as (url, proc):
            for round_ in range(args.rounds):
                for fmt in formats:  # alternately, so a busy moment hits both alike
                    run = throughput(
                        url,
                        ingest_key,
                        clients=args.clients,
                        connections=args.connections,
                        seconds=args.seconds,
                        fmt=fmt,
                        server_pid=proc.pid,
                        first_id=100 * (1 + len(formats) * round_ + formats.index(fmt)),
                    )
                    runs[fmt].append({k: round(v, 2) for k, v in run.items()})
                    print(
                        f"ingest ({fmt}): {run['readings_per_s']:,.0f} readings/s with batches "
                        f"of 500 (one server process; {args.clients} client processes "
                        f"x {args.connections} connections); server "
                        f"{run.get('server_cpu_s_per_million', 0):.1f} CPU s per million"
                    )
        through = runs[formats[0]][0]
        if args.throughput_only:
            return  # a quick look (A/B pairs): nothing recorded
        with plantstream_server("all", env=_env(database_url, redis_url)) as (url, _):
            lat = latency(
                url,
                ingest_key,
                read_key,
                rate=args.latency_rate,
                seconds=args.seconds,
                samples=args.latency_samples,
            )
        print(
            f"202 -> visible in /v1/latest at {lat['background_readings_per_s']:,.0f} "
            f"readings/s: p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms"
        )
        path = write_result(
            "ingest",
            {
                "batch_size": BATCH,
                "server_processes": 1,
                "client_processes": args.clients,
                "connections_per_client": args.connections,
                "throughput": {k: round(v, 1) for k, v in through.items()},
                "throughput_by_format": runs,
                "latency": {k: round(v, 1) for k, v in lat.items()},
                "goal": {"readings_per_s": 100_000, "p99_ms": 250},
                "command": " ".join(["python bench/ingest.py", *sys.argv[1:]]),
            },
            RESULTS,
        )
        print(f"written to {path}")


if __name__ == "__main__":
    main()
