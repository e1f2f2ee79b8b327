"""The edge agent measured: queue throughput in and out, backlog drain, OPC UA -> /v1/latest.

1. Queue: readings appended (batches of 5000, one transaction each) and forwarded out (peek
   + ack in one transaction each, no network) on one core, with ``synchronous=FULL`` and
   ``NORMAL`` run alternately (A/B on a shared machine: compare the ratio).
2. Drain: a backlog as a one-hour outage at 1,000 readings/s leaves it (``--backlog``,
   3.6 M by default) forwarded by the real forwarder (``--in-flight`` batches at once, each
   signal in order) into ``plantstream serve all`` until PostgreSQL holds every reading.
3. Latency: an asyncua server (the tests' simulated machine, as a subprocess) -> edge agent ->
   plantstream; for each new value, the time from its source timestamp until ``/v1/latest``
   shows it (p50/p99).

Writes bench/results/edge.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
from pydantic import SecretStr

from plantstream.edge import Agent, EdgeQueue, EdgeReading, EdgeStatus, Forwarder
from plantstream.edge.config import Destination, EdgeConfig, QueueConfig, ValueKind
from plantstream.local.ports import free_port
from plantstream.model import METRICS, now_us
from plantstream.store.keys import Role, create_key
from plantstream.testing import (
    BENCH_SERVER_SETTINGS,
    SERVER_SECRET,
    fresh_services,
    percentile,
    plantstream_server,
    server_env,
    stored_counter,
    wait_until,
    write_result,
)

RESULTS = Path(__file__).parent / "results"
FACILITY = "plant-edge"
MACHINE_SCRIPT = Path(__file__).parent.parent / "tests" / "fixtures" / "opcua.py"


def outage_readings(n: int, *, start_us: int, per_second: int = 1000) -> list[EdgeReading]:
    """``n`` readings of a plant sending ``per_second``: 9 metrics on as many devices as needed."""
    metrics = list(METRICS)
    per_device = len(metrics)
    out = []
    for i in range(n):
        second, slot = divmod(i, per_second)
        device, metric = divmod(slot, per_device)
        out.append(
            EdgeReading(
                "bench",
                f"m-{device:03d}",
                metrics[metric],
                start_us + second * 1_000_000,
                ValueKind.DOUBLE,
                1.0 + (i % 50),
                0,
                0,
                None,
            )
        )
    return out


def queue_throughput(n: int, durability: str, directory: Path) -> dict[str, float]:
    path = directory / f"q-{durability}-{time.monotonic_ns()}.db"
    q = EdgeQueue(QueueConfig(path=path, durability=durability))  # type: ignore[arg-type]
    readings = outage_readings(n, start_us=now_us() - 3_600_000_000)
    started = time.perf_counter()
    for i in range(0, n, 5000):
        q.append(readings[i : i + 5000], now_us=now_us())
    inn = n / (time.perf_counter() - started)
    started = time.perf_counter()
    while rows := q.peek(5000, now_us=now_us()):
        q.ack([r.id for r in rows], now_us=now_us())
    out = n / (time.perf_counter() - started)
    q.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return {"in_per_s": round(inn), "out_per_s": round(out)}


def raw_sqlite(n: int, directory: Path) -> float:
    """The same rows by bare executemany (no queue code): the machine's own ceiling now."""
    import sqlite3

    path = directory / f"raw-{time.monotonic_ns()}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a, b, c, d, e, f, g, h, i, j, k, l, m)")
    rows = [
        ("s", "d", "m", i, None, None, "double", 1.0, None, 0, None, i, None) for i in range(5000)
    ]
    started = time.perf_counter()
    for _ in range(n // 5000):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO t (a,b,c,d,e,f,g,h,i,j,k,l,m) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
        )
        conn.execute("COMMIT")
    rate = (n // 5000 * 5000) / (time.perf_counter() - started)
    conn.close()
    return round(rate)


def drain(backlog: int, directory: Path, in_flight: int) -> dict[str, object]:
    with fresh_services("bench_edge_drain") as (database_url, redis_url):
        with psycopg.connect(database_url, autocommit=True) as conn:
            key, _ = create_key(
                conn, server_secret=SERVER_SECRET.encode(), role=Role.INGEST, facility=FACILITY
            )
        env = server_env(
            port=free_port(),
            database_url=database_url,
            redis_url=redis_url,
            detection="false",
            quota_new_sensors_per_second="1e9",
            **BENCH_SERVER_SETTINGS,
        )
        q = EdgeQueue(QueueConfig(path=directory / "drain.db"))
        start_us = now_us() - (backlog // 1000 + 60) * 1_000_000
        readings = outage_readings(backlog, start_us=start_us)
        for i in range(0, backlog, 5000):
            q.append(readings[i : i + 5000], now_us=now_us())
        del readings
        with plantstream_server("all", env=env, ready_path="/readyz") as (url, _):
            dest = Destination(url=url, batch_size=5000, in_flight=in_flight)
            status = EdgeStatus()
            fwd = Forwarder(
                queue=q, status=status, destination=dest, facility=FACILITY, key=SecretStr(key)
            )
            load_before = os.getloadavg()
            stop = threading.Event()
            thread = threading.Thread(target=fwd.run, args=(stop,), daemon=True)
            started = time.perf_counter()
            thread.start()
            wait_until(lambda: q.depth == 0, timeout=1800, what="all forwarded", interval=0.05)
            forwarded = time.perf_counter() - started
            stop.set()
            thread.join(30)
            wait_until(
                lambda: _stored(database_url) >= backlog,
                timeout=1800,
                what="all stored",
                interval=0.5,
            )
            stored = time.perf_counter() - started
            fwd.close()
        q.close()
    push_back = {
        sample.labels["kind"]: int(sample.value)
        for metric in status.metrics.forward_errors.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }
    return {
        "backlog_readings": backlog,
        "in_flight": in_flight,
        "batch_size": 5000,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "retried_batches_by_code": push_back,
        "forwarded_seconds": round(forwarded, 1),
        "stored_seconds": round(stored, 1),
        "readings_per_s": round(backlog / stored),
        "extrapolated_3_6M_seconds": round(3_600_000 * stored / backlog, 1),
    }


def _stored(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return stored_counter(conn)


def latency(seconds: float, directory: Path) -> dict[str, object]:
    port = free_port()
    log_path = directory / "writes.jsonl"
    machine = subprocess.Popen(
        [
            sys.executable,
            str(MACHINE_SCRIPT),
            "--port",
            str(port),
            "--log",
            str(log_path),
            "--period",
            "0.2",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: log_path.exists() and log_path.stat().st_size > 0,
            timeout=120,
            what="the OPC UA server",
        )
        with fresh_services("bench_edge_latency") as (database_url, redis_url):
            with psycopg.connect(database_url, autocommit=True) as conn:
                ingest, _ = create_key(
                    conn, server_secret=SERVER_SECRET.encode(), role=Role.INGEST, facility=FACILITY
                )
                read, _ = create_key(
                    conn, server_secret=SERVER_SECRET.encode(), role=Role.READ, facility=FACILITY
                )
            env = server_env(
                port=free_port(),
                database_url=database_url,
                redis_url=redis_url,
                detection="false",
                quota_new_sensors_per_second="1e9",
                **BENCH_SERVER_SETTINGS,
            )
            with plantstream_server("all", env=env, ready_path="/readyz") as (url, _):
                return _measure(url, ingest, read, port, seconds, directory)
    finally:
        machine.terminate()
        machine.wait(10)


def _measure(
    url: str, ingest: str, read: str, port: int, seconds: float, directory: Path
) -> dict[str, object]:
    signal = {
        "node": "ns=2;s=Press1.Temperature",
        "device": "press-1",
        "metric": "temperature",
        "sampling_ms": 0,
    }
    config = EdgeConfig.model_validate(
        {
            "facility": FACILITY,
            "destination": {"url": url, "key_env": "UNUSED"},
            "queue": {"path": str(directory / "latency.db")},
            "health": {"listen": "127.0.0.1:0"},
            "sources": [
                {
                    "type": "opcua",
                    "name": "press",
                    "endpoint": f"opc.tcp://127.0.0.1:{port}/plantstream/test",
                    "security": {"mode": "none", "insecure": True},
                    "publishing_ms": 50,
                    "signals": [signal],
                }
            ],
        }
    )
    agent = Agent(config, SecretStr(ingest))
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    lags: list[float] = []
    seen: set[str] = set()
    headers = {"Authorization": f"Bearer {read}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=5) as client:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                answer = client.get(
                    "/v1/latest", params={"facility": FACILITY, "device": "press-1"}
                )
                now = time.time()
                if answer.status_code == 200:
                    for value in answer.json()["readings"]:
                        ts = value["ts"]
                        if ts not in seen:
                            seen.add(ts)
                            from datetime import datetime

                            lags.append(now - datetime.fromisoformat(ts).timestamp())
                time.sleep(0.01)
    finally:
        stop.set()
        thread.join(30)
    lags = lags[5:]  # the first values were written before the subscription
    lags.sort()
    return {
        "samples": len(lags),
        "write_period_s": 0.2,
        "poll_period_s": 0.01,
        "p50_ms": round(1000 * lags[len(lags) // 2], 1) if lags else None,
        "p99_ms": round(1000 * (percentile(lags, 0.99) or 0.0), 1) if lags else None,
        "max_ms": round(1000 * lags[-1], 1) if lags else None,
        "includes": "OPC UA publish (50 ms) + ingress flush (50 ms) + forward + stream + "
        "processor + Redis; /v1/latest polled every 10 ms",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue-readings", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds of FULL and NORMAL")
    parser.add_argument("--backlog", type=int, default=3_600_000)
    parser.add_argument("--latency-seconds", type=float, default=60)
    parser.add_argument("--in-flight", type=int, default=4, help="batches in flight")
    parser.add_argument(
        "--ab-rounds", type=int, default=2, help="pairs of drains, one batch vs --in-flight"
    )
    parser.add_argument("--ab-backlog", type=int, default=360_000)
    parser.add_argument("--drain-only", action="store_true", help="add a drain to the result")
    args = parser.parse_args()
    previous = (
        json.loads((RESULTS / "edge.json").read_text()) if (RESULTS / "edge.json").exists() else {}
    )
    if args.drain_only:  # another drain beside the last full run (the machine's load drifts)
        with tempfile.TemporaryDirectory() as tmp:
            rerun = drain(args.backlog, Path(tmp), args.in_flight)
        when = datetime.now(UTC).isoformat(timespec="seconds")
        command = "python bench/edge.py --drain-only"
        previous.setdefault("drain_reruns", []).append(
            {"measured_at": when, "command": command, **rerun}
        )
        (RESULTS / "edge.json").write_text(json.dumps(previous, indent=2) + "\n")
        return
    os.sched_setaffinity(0, {0})  # "on one core": the queue figures
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        rounds = []
        for _ in range(args.rounds):
            for durability in ("full", "normal"):
                measured = queue_throughput(args.queue_readings, durability, directory)
                raw = raw_sqlite(args.queue_readings, directory)
                rounds.append({"durability": durability, **measured, "raw_sqlite_in_per_s": raw,
                               "load_average": [round(x, 2) for x in os.getloadavg()]})  # fmt: skip
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        drained = drain(args.backlog, directory, args.in_flight)
        pairs = []
        for _ in range(args.ab_rounds):  # alternated: the machine's load drifts between runs
            for n in (1, args.in_flight):
                run = drain(args.ab_backlog, directory / f"ab-{len(pairs)}", n)
                keep = ("in_flight", "readings_per_s", "load_average_before", "load_average_after")
                pairs.append({k: run[k] for k in keep})
        lat = latency(args.latency_seconds, directory)
        lat["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    full = [r for r in rounds if r["durability"] == "full"]
    result = {
        "machine_note": "shared, busy machine (7 engineers on 2 cores); compare ratios, not "
        "absolutes; load averages (1, 5, 15 min) are recorded beside each figure",
        "queue": {
            "readings_per_round": args.queue_readings,
            "rounds": rounds,
            "full_median_in_per_s": statistics.median(r["in_per_s"] for r in full),
            "full_median_out_per_s": statistics.median(r["out_per_s"] for r in full),
        },
        "drain": drained,
        "drain_one_batch_vs_in_flight": pairs,
        "previous_drain": previous.get("drain"),
        "opcua_to_latest": lat,
        "goal": {"queue_per_s_each_way": 50_000, "drain_3_6M_seconds": 120},
        "command": " ".join(["python bench/edge.py", *sys.argv[1:]]),
    }
    print(write_result("edge", result, RESULTS))


if __name__ == "__main__":
    main()
