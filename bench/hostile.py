"""Hostile clients against ``plantstream serve all`` on loopback: does the service stay up?

For each attack, held for ``--hold`` seconds while probes run from addresses of their own:
  idle          1,000 TCP connections that send nothing (from 10 loopback addresses)
  partial       1,000 connections that sent part of a request line and headers, then stall
  large_headers 4 connections each sending one header of ``--header-mb`` MB
it records ``/healthz`` latency p50/p99 and failures (a fresh connection per probe, as a load
balancer's health check does), an ingest request's latency and statuses, how many attack
connections the server still holds at the end, and the server's peak memory. Run once with
the connection limits (``after``) and once with ``PLANTSTREAM_CONNECTION_GUARD=false``, which is
uvicorn as it was configured before them (``before``). Writes bench/results/hostile.json.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import psycopg

from plantstream.local.ports import free_port
from plantstream.store.keys import Role, create_key
from plantstream.testing import (
    BENCH_SERVER_SETTINGS,
    SERVER_SECRET,
    fresh_services,
    percentile,
    plantstream_server,
    server_env,
    write_result,
)

RESULTS = Path(__file__).parent / "results"
ATTACK_ADDRESSES = [f"127.0.0.{10 + n}" for n in range(10)]
HEALTH_FROM, INGEST_FROM = "127.0.0.2", "127.0.0.3"


def connect(port: int, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def still_open(sock: socket.socket) -> bool:
    """True while the server has neither answered nor closed this connection."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # an answer (a refusal) or the end of the connection
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


@contextmanager
def held_connections(port: int, count: int, first_bytes: bytes) -> Iterator[list[socket.socket]]:
    """``count`` connections spread over ATTACK_ADDRESSES, each having sent ``first_bytes``."""
    socks: list[socket.socket] = []
    try:
        for n in range(count):
            try:
                sock = connect(port, ATTACK_ADDRESSES[n % len(ATTACK_ADDRESSES)])
                if first_bytes:
                    sock.sendall(first_bytes)
                socks.append(sock)
            except OSError:
                pass  # refused at once: that is an answer too
        yield socks
    finally:
        for sock in socks:
            sock.close()


@contextmanager
def large_headers(port: int, connections: int, megabytes: int) -> Iterator[Counter[str]]:
    """Threads each sending one ``megabytes`` MB header; the outcomes they saw, by name."""
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def send() -> None:
        chunk = b"a" * (1 << 20)
        try:
            with connect(port, "127.0.0.1") as sock:
                sock.settimeout(30)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Big: ")
                for _ in range(megabytes):
                    if stop.is_set():
                        outcomes["stopped"] += 1
                        return
                    sock.sendall(chunk)
                sock.sendall(b"\r\n\r\n")
                status = sock.recv(64).split(b" ")[1:2]
                outcomes[f"status_{status[0].decode() if status else 'none'}"] += 1
        except OSError as exc:
            outcomes[type(exc).__name__] += 1

    threads = [threading.Thread(target=send) for _ in range(connections)]
    for thread in threads:
        thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def probe_loop(
    seconds: float, interval: float, call: Callable[[], int]
) -> tuple[list[float], Counter[str]]:
    """Call ``call`` every ``interval`` s for ``seconds``: latencies (s) and statuses."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    end = time.monotonic() + seconds
    pause = threading.Event()
    while time.monotonic() < end:
        started = time.perf_counter()
        try:
            statuses[str(call())] += 1
        except httpx.HTTPError as exc:
            statuses[type(exc).__name__] += 1
        latencies.append(time.perf_counter() - started)
        pause.wait(interval)
    return latencies, statuses


def summary(latencies: list[float], statuses: Counter[str]) -> dict[str, Any]:
    ordered = sorted(latencies)
    ok = statuses.get("200", 0) + statuses.get("202", 0)
    return {
        "requests": len(ordered),
        "ok": ok,
        "statuses": dict(statuses),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round((percentile(ordered, 0.99) or 0.0) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def probes(url: str, key: str, seconds: float, server_pid: int) -> dict[str, Any]:
    """Health and ingest probes for ``seconds``, from their own addresses; peak server RSS."""
    health = httpx.Client(
        timeout=10,
        transport=httpx.HTTPTransport(local_address=HEALTH_FROM),
        headers={"Connection": "close"},
    )
    ingest = httpx.Client(timeout=10, transport=httpx.HTTPTransport(local_address=INGEST_FROM))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    n = iter(range(1_000_000))
    peak = [0]
    done = threading.Event()
    server = psutil.Process(server_pid)

    def sample_memory() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], server.memory_info().rss)

    def post() -> int:
        ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        body = {
            "facility": "plant-01",
            "readings": [{"device": "probe", "metric": "pressure", "ts": ts, "value": next(n)}],
        }
        return ingest.post(
            url + "/v1/readings", content=orjson.dumps(body), headers=headers
        ).status_code

    results: dict[str, Any] = {}
    sampler = threading.Thread(target=sample_memory)
    sampler.start()
    side = threading.Thread(
        target=lambda: results.update(ingest=summary(*probe_loop(seconds, 0.2, post)))
    )
    side.start()
    results["healthz"] = summary(
        *probe_loop(seconds, 0.05, lambda: health.get(url + "/healthz").status_code)
    )
    side.join()
    done.set()
    sampler.join()
    results["server_peak_rss_mib"] = round(peak[0] / 2**20, 1)
    health.close()
    ingest.close()
    return results


def run_mode(
    database_url: str, redis_url: str, key: str, *, guard: bool, args: argparse.Namespace
) -> dict[str, Any]:
    env = server_env(
        port=free_port(),
        database_url=database_url,
        redis_url=redis_url,
        detection="false",
        connection_guard=str(guard).lower(),
        head_timeout_seconds=str(args.head_timeout),
        **{**BENCH_SERVER_SETTINGS, "max_connections_per_address": "256"},  # the default
    )
    port = int(env["PLANTSTREAM_PORT"])
    out: dict[str, Any] = {}
    # before: uvicorn logs a warning per refused request, thousands a second
    quiet = {} if guard else {"stderr": subprocess.DEVNULL}
    with plantstream_server("all", env=env, ready_path="/readyz", **quiet) as (url, proc):
        out["quiet"] = probes(url, key, args.quiet, proc.pid)
        head = b"GET /v1/latest?facility=plant-01 HTTP/1.1\r\nHost: bench\r\nX-Slow: "
        for name, first_bytes in (("idle", b""), ("partial", head)):
            with held_connections(port, args.connections, first_bytes) as socks:
                opened = sum(still_open(s) for s in socks)
                result = probes(url, key, args.hold, proc.pid)
                result["attack_connections_open_at_start"] = opened
                result["attack_connections_open_at_end"] = sum(still_open(s) for s in socks)
                out[name] = result
            print(f"  {name}: {summarize(out[name])}")
        with large_headers(port, args.header_connections, args.header_mb) as outcomes:
            result = probes(url, key, args.hold, proc.pid)
        result["attack_outcomes"] = dict(outcomes)
        out["large_headers"] = result
        print(f"  large_headers: {summarize(result)}")
    return out


def summarize(result: dict[str, Any]) -> str:
    h, i = result["healthz"], result["ingest"]
    return (
        f"/healthz {h['ok']}/{h['requests']} ok p50 {h['p50_ms']} ms p99 {h['p99_ms']} ms; "
        f"ingest {i['ok']}/{i['requests']} ok p99 {i['p99_ms']} ms; "
        f"peak RSS {result['server_peak_rss_mib']} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=14, help="seconds each attack is held")
    parser.add_argument("--quiet", type=float, default=5, help="seconds of probes, no attack")
    parser.add_argument("--head-timeout", type=float, default=10)
    parser.add_argument("--header-connections", type=int, default=4)
    parser.add_argument("--header-mb", type=int, default=50)
    parser.add_argument("--only", choices=["before", "after"], help="run one mode only")
    args = parser.parse_args()

    modes = [m for m in ("before", "after") if args.only in (None, m)]
    results: dict[str, Any] = {}
    with fresh_services("plantstream_bench_hostile") as (database_url, redis_url):
        with psycopg.connect(database_url, autocommit=True) as conn:
            key, _ = create_key(
                conn, server_secret=SERVER_SECRET.encode(), role=Role.INGEST, facility="plant-01"
            )
        for mode in modes:
            print(f"{mode} (connection limits {'off' if mode == 'before' else 'on'}):")
            results[mode] = run_mode(database_url, redis_url, key, guard=mode == "after", args=args)
    path = write_result(
        "hostile",
        {
            "note": "2 shared cores, busy with other work while measured: compare before/after",
            "attack_connections": args.connections,
            "hold_seconds": args.hold,
            "head_timeout_seconds": args.head_timeout,
            "large_headers": f"{args.header_connections} x {args.header_mb} MB",
            **results,
        },
        RESULTS,
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
