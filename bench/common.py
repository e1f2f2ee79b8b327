"""Shared set-up for benchmarks: servers (embedded unless URLs are given) and a fresh database."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from plantstream.local import EmbeddedServices
from plantstream.store.schema import migrate

RESULTS = Path(__file__).parent / "results"
SECRET = "bench-server-secret"


@contextmanager
def bench_services(name: str) -> Iterator[tuple[str, str]]:
    """A fresh database ``name`` and an emptied Redis; embedded servers unless configured."""
    database_url = os.environ.get("PLANTSTREAM_BENCH_DATABASE_URL")
    redis_url = os.environ.get("PLANTSTREAM_BENCH_REDIS_URL")
    services = None
    if not database_url or not redis_url:
        services = EmbeddedServices(Path(os.environ.get("PLANTSTREAM_DATA_DIR", ".plantstream")))
        started_db, started_redis = services.start()
        database_url = database_url or started_db.rsplit("/", 1)[0] + "/postgres"
        redis_url = redis_url or started_redis
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    bench_url = database_url.rsplit("/", 1)[0] + f"/{name}"
    migrate(bench_url)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    try:
        yield bench_url, redis_url
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def in_processes(target: Callable[..., None], arguments: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*args, queue)`` once per ``args`` in its own process; what each put back.

    Load generators run in processes of their own so the client's GIL is not the limit.
    """
    queue: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=target, args=(*args, queue)) for args in arguments]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    return results


def write_result(name: str, result: dict[str, object], directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **result,
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


@contextmanager
def serve(
    role: str, database_url: str, redis_url: str, port: int, **settings: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``plantstream serve <role>`` in its own process, once it answers /healthz.

    ``settings`` are extra PLANTSTREAM_* variables by their lower-case names.
    """
    env = {
        **os.environ,
        "PLANTSTREAM_DATABASE_URL": database_url,
        "PLANTSTREAM_REDIS_URL": redis_url,
        "PLANTSTREAM_PORT": str(port),
        "PLANTSTREAM_SERVER_SECRET": SECRET,
        "PLANTSTREAM_LOG_LEVEL": "WARNING",
        "PLANTSTREAM_RATE_LIMIT_PER_KEY": "100000",
        "PLANTSTREAM_AUTH_CACHE_SECONDS": "30",
        **{f"PLANTSTREAM_{name.upper()}": value for name, value in settings.items()},
    }
    proc = subprocess.Popen([sys.executable, "-m", "plantstream", "serve", role], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"serve {role} did not start")
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(30)
