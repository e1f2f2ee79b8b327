"""One tree's side of ``bench/ingest_ab.py inprocess``: its real app, in this process.

Run with ``PYTHONPATH=<tree>/src`` (any plantstream tree, 42eb1c3 or later): builds the app as
that tree's ``serve ingest`` does, then answers each line ``N`` on stdin with one JSON line: the
process CPU per ``POST /v1/readings`` over ``httpx.ASGITransport`` for N more requests.
Only for A/B runs; the database ``ab_ingest_<slot>`` is dropped and made again.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import redis

TREE, SLOT = sys.argv[1], int(sys.argv[2])
POSTGRES = os.environ.get("AB_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("AB_REDIS", "redis://127.0.0.1:6379") + f"/{SLOT}"
NEW = os.path.isdir(os.path.join(TREE, "src/plantstream/runtime"))  # after the redesign
DB = f"ab_ingest_{SLOT}"
SECRET = "ab-secret"  # pragma: allowlist secret
BATCH, DEVICES, IN_FLIGHT, WARM_UP = 500, 50, 4, 40

os.environ.update(
    PLANTSTREAM_DATABASE_URL=f"{POSTGRES}/{DB}",
    PLANTSTREAM_REDIS_URL=REDIS,
    PLANTSTREAM_SERVER_SECRET=SECRET,
    PLANTSTREAM_LOG_LEVEL="WARNING",
    PLANTSTREAM_RATE_LIMIT_PER_KEY="100000",
    PLANTSTREAM_AUTH_CACHE_SECONDS="30",
    PLANTSTREAM_DATA_DIR=os.environ.get("AB_DATA_DIR", ".plantstream") + f"/ab-{SLOT}",
)
if NEW:  # the settings its bench runs with (plantstream.testing.BENCH_SERVER_SETTINGS)
    os.environ.update(
        PLANTSTREAM_QUOTA_READINGS_PER_SECOND="1e9",
        PLANTSTREAM_QUOTA_READ_REQUESTS_PER_SECOND="1e9",
        PLANTSTREAM_MAX_CONNECTIONS_PER_ADDRESS="0",
        PLANTSTREAM_QUOTA_BACKLOG_READINGS="0",
    )

_gc = {"seconds": 0.0, "started": 0.0}


def _count_gc(phase: str, _info: dict[str, Any]) -> None:
    if phase == "start":
        _gc["started"] = time.process_time()
    else:
        _gc["seconds"] += time.process_time() - _gc["started"]


def build_app() -> tuple[Any, str]:
    """The tree's app as its ``serve ingest`` builds it, and an ingest key for it."""
    from plantstream.settings import Settings
    from plantstream.store.keys import Role, create_key
    from plantstream.store.schema import migrate

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    migrate(os.environ["PLANTSTREAM_DATABASE_URL"])
    redis.Redis.from_url(REDIS).flushdb()
    with psycopg.connect(os.environ["PLANTSTREAM_DATABASE_URL"], autocommit=True) as conn:
        key, _ = create_key(
            conn, server_secret=SECRET.encode(), role=Role.INGEST, facility="plant-01"
        )
    settings = Settings()
    if not NEW:
        from plantstream.api.server import build_state

        from plantstream.api.app import create_app
        from plantstream.local import resolve_endpoints

        return create_app(build_state(settings, resolve_endpoints(settings)), role="ingest"), key
    from plantstream.runtime import Runtime, web

    app = Runtime(settings).app(["ingest"])
    if hasattr(web, "settle_heap"):  # what this tree's serve does before serving
        web.settle_heap()
    return app, key


def body(client: int, seq: int, origin: datetime) -> bytes:
    """The bench load client's body (plantstream.testing.load.unique_body, JSON)."""
    slots = BATCH // DEVICES
    times = [
        (origin + timedelta(milliseconds=seq * slots + k)).isoformat().replace("+00:00", "Z")
        for k in range(slots)
    ]
    readings = [
        {
            "device": f"soak-{client}-{i % DEVICES:02d}",
            "metric": "temperature",
            "ts": times[i // DEVICES],
            "value": 40.0 + (seq + i) % 50 / 10,
        }
        for i in range(BATCH)
    ]
    return orjson.dumps({"facility": "plant-01", "readings": readings})


async def serve(app: Any, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    origin = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ab") as client:

        async def post_all(bodies: list[bytes]) -> None:
            todo = list(reversed(bodies))

            async def one_connection() -> None:
                while todo:
                    answer = await client.post("/v1/readings", content=todo.pop(), headers=headers)
                    if answer.status_code != 202 or answer.json()["accepted"] != BATCH:
                        raise RuntimeError(answer.text)

            await asyncio.gather(*(one_connection() for _ in range(IN_FLIGHT)))

        seq = WARM_UP
        await post_all([body(0, s, origin) for s in range(WARM_UP)])
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            n = int(line)
            bodies = [body(0, seq + k, origin) for k in range(n)]
            seq += n
            gc0, r0, c0 = (
                _gc["seconds"],
                resource.getrusage(resource.RUSAGE_SELF),
                time.process_time(),
            )
            await post_all(bodies)
            c1, r1 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
            answer = {
                "cpu_us": round((c1 - c0) / n * 1e6),
                "sys_us": round((r1.ru_stime - r0.ru_stime) / n * 1e6),
                "gc_us": round((_gc["seconds"] - gc0) / n * 1e6),
                "voluntary_switches": round((r1.ru_nvcsw - r0.ru_nvcsw) / n, 1),
                "load": round(os.getloadavg()[0], 2),
            }
            print(json.dumps(answer), flush=True)


def main() -> None:
    gc.callbacks.append(_count_gc)
    app, key = build_app()
    if os.environ.get("AB_FREEZE_ALL") and not NEW:  # take the GC change out of the A/B
        gc.collect()
        gc.freeze()
    asyncio.run(serve(app, key))


if __name__ == "__main__":
    main()
