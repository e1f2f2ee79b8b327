"""Shared set-up for benchmarks: servers (embedded unless URLs are given) and a fresh database."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import redis

from plantstream.local import EmbeddedServices
from plantstream.store.schema import migrate

RESULTS = Path(__file__).parent / "results"


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


def write_result(name: str, result: dict[str, object]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **result,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
