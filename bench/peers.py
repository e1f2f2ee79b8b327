"""plantstream beside VictoriaMetrics on the same machine, in the same run (issue 18).

The same ``--readings`` unique readings (default 1,000,000) are sent by the same asyncio
clients (``--clients`` processes x ``--connections``, batches of 500), with every batch
pre-built before the clock starts, to:

1. VictoriaMetrics (Debian's ``victoria-metrics``) at ``/write`` in the line protocol;
2. ``plantstream serve all`` (embedded PostgreSQL + Redis, detection on) at ``/v1/readings``;
3. the same at plantstream's own ``/api/v2/write`` (the same line-protocol bodies as 1).

For each: ingest readings/s (first request -> last answer) and sent -> all queryable
readings/s (first request -> every reading counted by a query: VictoriaMetrics'
``count_over_time``, PostgreSQL's ``readings`` table), their ratios to VictoriaMetrics, and
plantstream's CPU seconds per million readings by process (ingest, processor, PostgreSQL,
Redis, from psutil). A pushed-back batch (429/503) is sent again after its ``Retry-After``,
as a gateway would, so every run stores exactly the same readings.
Writes bench/results/peers.json. Without ``victoria-metrics`` on the PATH it says so and
measures plantstream only (install: ``apt-get install victoria-metrics``).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import psycopg
import redis

from plantstream.local.ports import free_port
from plantstream.store.keys import Role, create_key
from plantstream.testing import (
    BENCH_SERVER_SETTINGS,
    SERVER_SECRET,
    answers_ok,
    fresh_services,
    plantstream_server,
    readings_count,
    server_env,
    start_process,
    stop_process,
    stored_counter,
    write_result,
)

RESULTS = Path(__file__).parent / "results"
BATCH, DEVICES, FACILITY = 500, 50, "plant-01"
MACHINE_NOTE = "shared, busy: 8 engineers on 2 cores this session; compare ratios, not absolutes"


def batch_readings(client: int, seq: int, origin_ms: int) -> list[tuple[str, int, float]]:
    """(device, ts in ms, value) of batch ``seq`` of ``client``: unique across the run."""
    slots = BATCH // DEVICES
    return [
        (
            f"peer-{client}-{i % DEVICES:02d}",
            origin_ms + seq * slots + i // DEVICES,
            40.0 + (seq + i) % 50 / 10,
        )
        for i in range(BATCH)
    ]


def json_body(readings: list[tuple[str, int, float]]) -> bytes:
    def iso(ms: int) -> str:
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat()

    rows = [
        {"device": d, "metric": "temperature", "ts": iso(t), "value": v} for d, t, v in readings
    ]
    return orjson.dumps({"facility": FACILITY, "readings": rows})


def line_body(readings: list[tuple[str, int, float]]) -> bytes:
    return "\n".join(f"m,device={d} temperature={v} {t}000000" for d, t, v in readings).encode()


BODIES: dict[str, Callable[[list[tuple[str, int, float]]], bytes]] = {
    "json": json_body,
    "line": line_body,
}


async def _send(url: str, headers: dict[str, str], bodies: list[bytes], connections: int) -> int:
    """Post every body on ``connections`` connections; re-send push-backs. Requests made."""
    queue = list(reversed(bodies))
    requests = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def connection() -> None:
            nonlocal requests
            while queue:
                body = queue.pop()
                while True:
                    requests += 1
                    answer = await client.post(url, content=body, headers=headers)
                    if answer.status_code in (202, 204):
                        break
                    if answer.status_code not in (429, 503):
                        raise RuntimeError(f"{answer.status_code}: {answer.text[:300]}")
                    await asyncio.sleep(min(1.0, float(answer.headers.get("retry-after", 1))))

        await asyncio.gather(*(connection() for _ in range(connections)))
    return requests


def _client(args: tuple[Any, ...], barrier: Any, out: Any) -> None:
    url, key, fmt, client, batches, connections, origin_ms = args
    bodies = [BODIES[fmt](batch_readings(client, seq, origin_ms)) for seq in range(batches)]
    content = "application/json" if fmt == "json" else "text/plain; charset=utf-8"
    scheme = "Bearer" if fmt == "json" else "Token"  # as each kind of client sends its key
    headers = {"Authorization": f"{scheme} {key}", "Content-Type": content}
    barrier.wait()  # every client has built its bodies: the clock starts now
    try:
        out.put(asyncio.run(_send(url, headers, bodies, connections)))
    except Exception as exc:  # the parent must hear of it, not wait for ever
        out.put(f"client {client}: {type(exc).__name__}: {exc}")


def send_all(
    url: str,
    key: str,
    fmt: str,
    *,
    readings: int,
    clients: int,
    connections: int,
    queryable: Callable[[], int],
) -> dict[str, float]:
    """Send ``readings`` from ``clients`` processes; time the last answer and full visibility."""
    batches = readings // BATCH // clients
    total = batches * BATCH * clients
    origin_ms = int((time.time() - 6 * 3600) * 1000)
    barrier, out = mp.Barrier(clients + 1), mp.Queue()
    procs = [
        mp.Process(
            target=_client, args=((url, key, fmt, c, batches, connections, origin_ms), barrier, out)
        )
        for c in range(clients)
    ]
    for proc in procs:
        proc.start()
    barrier.wait()
    started = time.perf_counter()
    requests = [out.get() for _ in procs]
    sent = time.perf_counter() - started
    for proc in procs:
        proc.join()
    failed = [r for r in requests if isinstance(r, str)]
    if failed:
        raise RuntimeError("; ".join(failed))
    seen = queryable()
    while seen < total and time.perf_counter() - started < sent + 300:
        time.sleep(0.1)
        seen = queryable()
    visible = time.perf_counter() - started
    if seen != total:
        raise RuntimeError(f"{seen} of {total} readings queryable after {visible:.0f} s")
    return {
        "readings": total,
        "requests": sum(requests),
        "ingest_readings_per_s": round(total / sent),
        "sent_to_queryable_readings_per_s": round(total / visible),
        "seconds_to_last_answer": round(sent, 2),
        "seconds_to_all_queryable": round(visible, 2),
    }


@contextmanager
def victoria_metrics() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="peers-vm-") as data:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [
            shutil.which("victoria-metrics") or "victoria-metrics",
            f"-storageDataPath={data}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-retentionPeriod=10y",
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ]
        proc = start_process(argv, ready=lambda: answers_ok(url + "/health"), what="VM")
        try:
            yield url
        finally:
            stop_process(proc)


def vm_count(url: str) -> int:
    query = {"query": "sum(count_over_time(m_temperature[1d]))", "nocache": "1"}
    result = httpx.get(url + "/api/v1/query", params=query, timeout=30).json()["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU of ``proc``, its live children and the children it already reaped."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + (t.children_user + t.children_system if p is proc else 0)
        except psutil.NoSuchProcess:
            pass
    return total


def plantstream_cpu(server: psutil.Process, postgres: psutil.Process, redis_pid: int) -> dict:
    """CPU seconds so far by part: the web workers (ingest), the processor, the rest of
    plantstream (supervisor and fork server; everything with ``process_layout=threads``),
    PostgreSQL and Redis."""
    parts = {"ingest": 0.0, "processor": 0.0, "plantstream_other": 0.0}
    for p in [server, *server.children(recursive=True)]:
        try:
            name, t = p.name(), p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        if name.startswith("ps-web-"):
            part = "ingest"
        elif name.startswith("ps-processor"):
            part = "processor"
        else:
            part = "plantstream_other"
        parts[part] += t.user + t.system
    parts["postgres"] = cpu_seconds(postgres)
    parts["redis"] = cpu_seconds(psutil.Process(redis_pid))
    return parts


def run_plantstream(fmt: str, layout: str, args: argparse.Namespace) -> dict[str, Any]:
    with fresh_services(f"plantstream_bench_peers_{fmt}") as (database_url, redis_url):
        with psycopg.connect(database_url, autocommit=True) as conn:
            key, _ = create_key(
                conn, server_secret=SERVER_SECRET.encode(), role=Role.INGEST, facility=FACILITY
            )
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()
            postgres = psutil.Process(int(backend[0]) if backend else 0).parent()
        redis_pid = int(redis.Redis.from_url(redis_url).info("server")["process_id"])
        env = server_env(
            port=free_port(),
            database_url=database_url,
            redis_url=redis_url,
            **BENCH_SERVER_SETTINGS,
            process_layout=layout,
            **dict(s.split("=", 1) for s in args.set),
        )
        path = "/v1/readings" if fmt == "json" else f"/api/v2/write?bucket={FACILITY}&org=bench"
        with (
            plantstream_server("all", env=env, timeout=300) as (url, proc),
            psycopg.connect(database_url, autocommit=True) as watch,
        ):
            assert postgres is not None
            server = psutil.Process(proc.pid)
            before = plantstream_cpu(server, postgres, redis_pid)
            run = send_all(
                url + path,
                key,
                fmt,
                readings=args.readings,
                clients=args.clients,
                connections=args.connections,
                queryable=lambda: stored_counter(watch),
            )
            after = plantstream_cpu(server, postgres, redis_pid)
            stored = readings_count(watch)
        if stored != run["readings"]:
            raise RuntimeError(f"{stored} rows stored for {run['readings']} readings sent")
    per_million = 1e6 / run["readings"]
    run["cpu_seconds_per_million"] = {
        k: round((after[k] - before[k]) * per_million, 2) for k in after
    }
    run["cpu_seconds_per_million"]["total"] = round(sum(run["cpu_seconds_per_million"].values()), 2)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--connections", type=int, default=4, help="connections per client")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a plantstream setting for serve all, e.g. web_workers=1",
    )
    parser.add_argument(
        "--layouts",
        default="processes",
        help="plantstream process layouts to measure, comma-separated: processes, threads "
        "(the A/B of the process layout)",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    runs: dict[str, Any] = {}
    if shutil.which("victoria-metrics"):
        with victoria_metrics() as vm:
            runs["victoriametrics_line"] = send_all(
                vm + f"/write?db={FACILITY}",
                "-",
                "line",
                readings=args.readings,
                clients=args.clients,
                connections=args.connections,
                queryable=lambda: vm_count(vm),
            )
        print("VictoriaMetrics /write:", runs["victoriametrics_line"])
    else:
        print(
            "victoria-metrics is not installed (apt-get install victoria-metrics): "
            "measuring plantstream only"
        )
    for layout in args.layouts.split(","):
        for fmt, path in (("json", "v1_readings"), ("line", "line")):
            name = f"plantstream_{path}_{layout}"
            runs[name] = run_plantstream(fmt, layout, args)
            print(f"{name}:", runs[name])
    ratios = {}
    if "victoriametrics_line" in runs:
        vm = runs["victoriametrics_line"]
        for name in [n for n in runs if n.startswith("plantstream_")]:
            ratios[name] = {
                k: round(runs[name][k] / vm[k], 3)
                for k in ("ingest_readings_per_s", "sent_to_queryable_readings_per_s")
            }
        print("ratios to VictoriaMetrics:", ratios)
    path = write_result(
        "peers",
        {
            "machine_note": MACHINE_NOTE,
            "load_average_1m": {
                "before": round(load_before[0], 1),
                "after": round(os.getloadavg()[0], 1),
            },
            "batch_size": BATCH,
            "client_processes": args.clients,
            "connections_per_client": args.connections,
            "plantstream_settings": dict(s.split("=", 1) for s in args.set),
            "runs": runs,
            "ratios_to_victoriametrics": ratios,
            "goal": {"sent_to_queryable_ratio": 0.5},
        },
        RESULTS,
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
