"""Ingest A/B between plantstream trees (a commit's worktree each), alternated on one machine.

``inprocess``: process CPU per ``POST /v1/readings`` through each tree's real app over
``httpx.ASGITransport`` (bench/ingest_ab_worker.py, one long-lived worker per tree), in blocks
alternated base, new, new, base, ...: far steadier on a shared machine than wall throughput.
``http``: bench/ingest.py's throughput phase against each tree's ``serve ingest`` in turn,
with the server's CPU and context switches. Needs PostgreSQL and Redis (``AB_POSTGRES``,
``AB_REDIS``; 127.0.0.1 by default); prints JSON. bench/results/redesign_ab.json has its use:
``python bench/ingest_ab.py inprocess /work/wt/base . --blocks 12 --requests 400``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from plantstream.local.ports import free_port
from plantstream.testing import run_clients

WORKER = Path(__file__).parent / "ingest_ab_worker.py"
POSTGRES = os.environ.get("AB_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("AB_REDIS", "redis://127.0.0.1:6379")


def _env(tree: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(tree).resolve() / "src")}


def inprocess(trees: list[str], blocks: int, requests: int) -> dict[str, Any]:
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), tree, str(slot)],
            env=_env(tree),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for slot, tree in enumerate(trees, start=1)
    ]
    for worker in workers:
        assert worker.stdout is not None
        while (line := worker.stdout.readline()) and line.strip() != "ready":
            pass
    runs: dict[str, list[dict[str, Any]]] = {tree: [] for tree in trees}
    for block in range(blocks):
        for index in range(len(trees)) if block % 2 == 0 else reversed(range(len(trees))):
            worker = workers[index]
            assert worker.stdin is not None
            assert worker.stdout is not None
            worker.stdin.write(f"{requests}\n")
            worker.stdin.flush()
            runs[trees[index]].append(json.loads(worker.stdout.readline()))
        print(" | ".join(f"{t}: {runs[t][-1]}" for t in trees), file=sys.stderr)
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("\n")
        worker.stdin.flush()
        worker.wait(30)
    base = runs[trees[0]]
    result: dict[str, Any] = {"requests_per_block": requests, "blocks": runs}
    for tree in trees[1:]:
        ratios = [b["cpu_us"] / n["cpu_us"] for b, n in zip(base, runs[tree], strict=True)]
        result[f"median_cpu_ratio_base_over {tree}"] = round(statistics.median(ratios), 3)
    result["median_cpu_us"] = {t: statistics.median(r["cpu_us"] for r in runs[t]) for t in trees}
    return result


def _proc_cpu(pid: int) -> tuple[float, float, int]:
    """User and system CPU seconds of ``pid`` and the voluntary switches of its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches"):
                switches += int(line.split()[1])
    return int(fields[11]) / tick, int(fields[12]) / tick, switches


def http(tree: str, seconds: float, slot: int, fmt: str = "json") -> dict[str, Any]:
    database, redis_url = f"ab_http_{slot}", f"{REDIS}/{8 + slot}"
    setup = f"""
import psycopg, redis
from plantstream.store.keys import Role, create_key
from plantstream.store.schema import migrate
with psycopg.connect("{POSTGRES}/postgres", autocommit=True) as c:
    c.execute('DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    c.execute('CREATE DATABASE "{database}"')
migrate("{POSTGRES}/{database}")
redis.Redis.from_url("{redis_url}").flushdb()
with psycopg.connect("{POSTGRES}/{database}", autocommit=True) as c:
    print(create_key(c, server_secret=b"ab-secret", role=Role.INGEST, facility="plant-01")[0])
"""
    made = subprocess.run(
        [sys.executable, "-c", setup], env=_env(tree), capture_output=True, text=True, check=True
    )
    key = made.stdout.split()[-1]
    port = free_port()
    env = {
        **_env(tree),
        "PLANTSTREAM_DATABASE_URL": f"{POSTGRES}/{database}",
        "PLANTSTREAM_REDIS_URL": redis_url,
        "PLANTSTREAM_PORT": str(port),
        "PLANTSTREAM_SERVER_SECRET": "ab-secret",  # pragma: allowlist secret
        "PLANTSTREAM_LOG_LEVEL": "WARNING",
        "PLANTSTREAM_RATE_LIMIT_PER_KEY": "100000",
        "PLANTSTREAM_AUTH_CACHE_SECONDS": "30",
    }
    if (Path(tree) / "src/plantstream/runtime").is_dir():  # its bench settings
        env.update(
            PLANTSTREAM_QUOTA_READINGS_PER_SECOND="1e9",
            PLANTSTREAM_QUOTA_READ_REQUESTS_PER_SECOND="1e9",
            PLANTSTREAM_MAX_CONNECTIONS_PER_ADDRESS="0",
            PLANTSTREAM_QUOTA_BACKLOG_READINGS="0",
        )
    server = subprocess.Popen([sys.executable, "-m", "plantstream", "serve", "ingest"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve ingest of {tree} did not start")
            time.sleep(0.2)
        run_clients(url, key, first_id=900, count=2, seconds=2, rate=None, connections=4, fmt=fmt)
        user0, sys0, switches0 = _proc_cpu(server.pid)
        run = run_clients(
            url, key, first_id=0, count=2, seconds=seconds, rate=None, connections=4, fmt=fmt
        )
        user1, sys1, switches1 = _proc_cpu(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    accepted = run["accepted"]
    return {
        "tree": tree,
        "format": fmt,
        "readings_per_s": round(accepted / seconds),
        "failed_requests": sum(n for a, n in run["answers"].items() if a != "202"),
        "server_cpu_s_per_M": round((user1 - user0 + sys1 - sys0) / accepted * 1e6, 2),
        "sys_s_per_M": round((sys1 - sys0) / accepted * 1e6, 2),
        "voluntary_switches_per_request": round((switches1 - switches0) / (accepted / 500), 1),
        "p50_ms": run["latency_ms"]["202"]["p50"],
        "load": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["inprocess", "http"])
    parser.add_argument("trees", nargs="+", help="worktrees; the first is the base")
    parser.add_argument("--blocks", type=int, default=12, help="inprocess: blocks per tree")
    parser.add_argument("--requests", type=int, default=400, help="inprocess: per block")
    parser.add_argument("--pairs", type=int, default=5, help="http: rounds over the trees")
    parser.add_argument("--seconds", type=float, default=15, help="http: per run")
    parser.add_argument(
        "--format", choices=["json", "msgpack"], default="json", help="http: the bodies' format"
    )
    args = parser.parse_args()
    if args.mode == "inprocess":
        print(json.dumps(inprocess(args.trees, args.blocks, args.requests), indent=1))
        return
    for _ in range(args.pairs):
        for slot, tree in enumerate(args.trees, start=1):
            print(json.dumps(http(tree, args.seconds, slot, args.format)), flush=True)


if __name__ == "__main__":
    main()
