"""The HTTP server, chosen by measurement: the same ingest app behind uvicorn (httptools +
uvloop, plantstream's ``serve ingest``) and behind granian, with the same worker count.

Both servers run at once on their own ports (an idle one costs nothing); bench/ingest.py's
throughput phase is aimed at each in turn, alternated A, B, B, A, ... so that a busy moment
of the shared machine hits both alike. Reported per run: readings/s accepted and the CPU
seconds per million readings of the server's whole process tree (supervisor, workers).
granian is not a dependency of plantstream: install it where this interpreter finds it
(``pip install granian``, or ``pip install --target DIR granian`` and ``GRANIAN_PATH=DIR``).
Prints JSON; ``--record`` adds a dated ``http_server`` section to bench/results/ingest.json.

    python bench/http_server_ab.py --workers 1 --rounds 3 --seconds 10
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg

from plantstream.local.ports import free_port
from plantstream.store.keys import Role, create_key
from plantstream.testing import (
    BENCH_SERVER_SETTINGS,
    SERVER_SECRET,
    answers_ok,
    fresh_services,
    run_clients,
    server_env,
    start_process,
)
from plantstream.testing.processes import stop_process

BENCH = Path(__file__).parent
RESULTS = BENCH / "results" / "ingest.json"


def granian_app() -> Any:
    """The factory granian calls in each of its workers: ``serve ingest``'s app, built the
    same way (settings from the environment, the heap settled before serving)."""
    from plantstream.runtime.runtime import Runtime
    from plantstream.runtime.web import settle_heap
    from plantstream.settings import Settings

    app = Runtime(Settings()).app(["ingest"])
    settle_heap()
    return app


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every process below it."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _start(server: str, env: dict[str, str], workers: int) -> tuple[str, subprocess.Popen[bytes]]:
    port = env["PLANTSTREAM_PORT"]
    url = f"http://127.0.0.1:{port}"
    if server == "uvicorn":
        argv = [sys.executable, "-m", "plantstream", "serve", "ingest"]
    else:
        argv = [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--factory",
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--no-ws",
            "--no-access-log",
            "--log-level",
            "warning",
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--working-dir",
            str(BENCH),
            "http_server_ab:granian_app",
        ]
    proc = start_process(
        argv,
        ready=lambda: answers_ok(url + "/healthz"),
        what=server,
        timeout=60,
        env=env,
    )
    return url, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=1, help="web worker processes of each")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternated pairs")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--format", choices=["json", "msgpack"], default="json")
    parser.add_argument("--record", action="store_true", help="add to bench/results/ingest.json")
    args = parser.parse_args()
    extra = os.environ.get("GRANIAN_PATH", "")
    if extra:
        sys.path.insert(0, extra)
    if importlib.util.find_spec("granian") is None:
        print("granian is not installed here (pip install granian): nothing to compare")
        return
    pythonpath = os.pathsep.join(
        p for p in (os.environ.get("PYTHONPATH", ""), extra, str(BENCH)) if p
    )
    servers = ["uvicorn", "granian"]
    with fresh_services("plantstream_bench_http_server") as (database_url, redis_url):
        with psycopg.connect(database_url, autocommit=True) as conn:
            key, _ = create_key(
                conn, server_secret=SERVER_SECRET.encode(), role=Role.INGEST, facility="plant-01"
            )
        started = {}
        try:
            for server in servers:
                env = server_env(
                    port=free_port(),
                    database_url=database_url,
                    redis_url=redis_url,
                    web_workers=str(args.workers),
                    **BENCH_SERVER_SETTINGS,
                )
                env["PYTHONPATH"] = pythonpath
                started[server] = _start(server, env, args.workers)
            time.sleep(1)  # the workers' pools and catalogs are up
            runs: dict[str, list[dict[str, float]]] = {s: [] for s in servers}
            first_id = 100
            for round_ in range(args.rounds):
                for server in servers if round_ % 2 == 0 else reversed(servers):
                    url, proc = started[server]
                    cpu = _tree_cpu(proc.pid)
                    run = run_clients(
                        url,
                        key,
                        first_id=first_id,
                        count=args.clients,
                        seconds=args.seconds,
                        rate=None,
                        connections=args.connections,
                        fmt=args.format,
                    )
                    first_id += 100
                    spent = _tree_cpu(proc.pid) - cpu
                    failed = sum(n for a, n in run["answers"].items() if a != "202")
                    entry = {
                        "readings_per_s": round(run["accepted"] / args.seconds),
                        "server_cpu_s_per_million": round(spent / max(1, run["accepted"]) * 1e6, 2),
                        "failed_requests": failed,
                        "load_average_1m": round(os.getloadavg()[0], 2),
                    }
                    runs[server].append(entry)
                    print(server, entry, file=sys.stderr)
        finally:
            for _, proc in started.values():
                stop_process(proc)
    summary: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "workers": args.workers,
        "format": args.format,
        "clients": f"{args.clients} processes x {args.connections} connections, batches of 500",
        "versions": {s: importlib.metadata.version(s) for s in servers},
        "runs": runs,
        "median": {
            s: {
                k: round(statistics.median(r[k] for r in runs[s]), 2)
                for k in ("readings_per_s", "server_cpu_s_per_million")
            }
            for s in servers
        },
        "command": " ".join(["python bench/http_server_ab.py", *sys.argv[1:]]),
    }
    print(json.dumps(summary, indent=2))
    if args.record:
        record = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        record.setdefault("http_server", {})[
            f"{summary['measured_at'][:10]} workers={args.workers} {args.format}"
        ] = summary
        RESULTS.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
