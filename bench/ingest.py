"""Ingest throughput and end-to-end latency, over real HTTP on loopback.

1. Throughput: ``plantstream serve ingest`` (one server process) takes POSTs of 500
   readings from load-generator processes; readings/s accepted.
2. Latency: ``plantstream serve all`` (ingest + processor + API) under a steady 10,000
   readings/s; for sampled requests, the time from the 202 to the value being visible in
   ``/v1/latest``; p50 and p99.
Writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import psycopg

from plantstream.local.ports import free_port
from plantstream.store.keys import Role, create_key

sys.path.insert(0, str(Path(__file__).parent))
from common import SECRET, bench_services, serve, write_result


def batch_body(facility: str, device_count: int, size: int, start: datetime) -> bytes:
    readings = []
    for i in range(size):
        ts = start + timedelta(milliseconds=i)
        readings.append(
            {
                "device": f"machine-{i % device_count:03d}",
                "metric": "temperature",
                "ts": ts.isoformat().replace("+00:00", "Z"),
                "value": 40.0 + (i % 50) / 10,
                "unit": "degC",
            }
        )
    return orjson.dumps({"facility": facility, "readings": readings})


def _load_worker(
    url: str, key: str, bodies: list[bytes], seconds: float, rate: float | None, out: mp.Queue
) -> None:  # type: ignore[type-arg]
    client = httpx.Client(timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    sent = accepted = failed = 0
    started = time.perf_counter()
    interval = 1 / rate if rate else 0.0
    next_at = started
    i = 0
    while time.perf_counter() - started < seconds:
        if interval:
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            next_at += interval
        response = client.post(
            url + "/v1/readings", content=bodies[i % len(bodies)], headers=headers
        )
        i += 1
        sent += 1
        if response.status_code == 202:
            accepted += response.json()["accepted"]
        else:
            failed += 1
    out.put((accepted, failed, time.perf_counter() - started))


def throughput(url: str, key: str, *, workers: int, seconds: float, batch: int) -> dict[str, float]:
    now = datetime.now(UTC) - timedelta(minutes=5)
    bodies = [batch_body("plant-01", 50, batch, now + timedelta(seconds=i)) for i in range(20)]
    queue: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [
        mp.Process(target=_load_worker, args=(url, key, bodies, seconds, None, queue))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    accepted = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results)
    return {"readings_per_s": accepted / elapsed, "failed_requests": failed}


def latency(
    url: str, ingest_key: str, read_key: str, *, rate: float, seconds: float, samples: int
) -> dict[str, float]:
    """p50/p99 of 202 -> visible in /v1/latest, under ``rate`` readings/s of background load."""
    batch = 500
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
    now = datetime.now(UTC) - timedelta(minutes=2)
    bodies = [batch_body("plant-01", 50, batch, now + timedelta(seconds=i)) for i in range(60)]
    queue: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    background = mp.Process(
        target=_load_worker, args=(url, ingest_key, bodies, seconds, rate / batch, queue)
    )
    background.start()
    delays = []
    gap = seconds / (samples + 2)
    time.sleep(gap)  # let the background load settle first
    for n in range(samples):
        time.sleep(gap)
        delays.append(probe(float(n), 10.0))
    background.join()
    accepted, failed, elapsed = queue.get()
    delays.sort()
    return {
        "background_readings_per_s": accepted / elapsed,
        "background_failed_requests": failed,
        "samples": len(delays),
        "p50_ms": statistics.median(delays) * 1000,
        "p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))] * 1000,
        "max_ms": delays[-1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--latency-rate", type=float, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=100)
    args = parser.parse_args()

    with bench_services("plantstream_bench_ingest") as (database_url, redis_url):
        with psycopg.connect(database_url, autocommit=True) as conn:
            ingest_key, _ = create_key(
                conn, server_secret=SECRET.encode(), role=Role.INGEST, facility="plant-01"
            )
            read_key, _ = create_key(
                conn, server_secret=SECRET.encode(), role=Role.READ, facility="plant-01"
            )
        with serve("ingest", database_url, redis_url, free_port()) as (url, _):
            through = throughput(
                url, ingest_key, workers=args.workers, seconds=args.seconds, batch=500
            )
        print(
            f"ingest: {through['readings_per_s']:,.0f} readings/s with batches of 500 "
            f"(one server process, {args.workers} client processes)"
        )
        with serve("all", database_url, redis_url, free_port()) as (url, _):
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
                "batch_size": 500,
                "server_processes": 1,
                "client_processes": args.workers,
                "throughput": {k: round(v, 1) for k, v in through.items()},
                "latency": {k: round(v, 1) for k, v in lat.items()},
                "goal": {"readings_per_s": 100_000, "p99_ms": 250},
            },
        )
        print(f"written to {path}")


if __name__ == "__main__":
    main()
