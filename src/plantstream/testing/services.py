"""PostgreSQL and Redis for a benchmark run: embedded unless URLs are given, always fresh.

``PLANTSTREAM_BENCH_DATABASE_URL`` / ``PLANTSTREAM_BENCH_REDIS_URL`` point a run at servers of
your own; otherwise the embedded servers under ``PLANTSTREAM_DATA_DIR`` (``.plantstream``) are used.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from plantstream.errors import ServiceError
from plantstream.local import EmbeddedServices
from plantstream.store.schema import migrate
from plantstream.testing.databases import create_database, drop_database, with_database

# a benchmark measures the server, not the per-key rate limit, the per-facility readings
# and read quotas (bench/soak.py --noisy-neighbour measures that), the key lookups, nor the
# per-address connection cap (all its load comes from one loopback address)
BENCH_SERVER_SETTINGS = {
    "rate_limit_per_key": "100000",
    "quota_readings_per_second": "1e9",
    "quota_read_requests_per_second": "1e9",  # the latency probes poll /v1/latest every 2 ms
    "auth_cache_seconds": "30",
    "max_connections_per_address": "0",
    # serve ingest alone has no processor: every reading stays backlog (soak.py sets its own)
    "quota_backlog_readings": "0",
}


@contextmanager
def fresh_services(name: str) -> Iterator[tuple[str, str]]:
    """A fresh migrated database ``name`` and an emptied Redis: (database URL, Redis URL).

    The database is dropped when the block ends; the servers keep running for the next run.
    """
    database_url = os.environ.get("PLANTSTREAM_BENCH_DATABASE_URL")
    redis_url = os.environ.get("PLANTSTREAM_BENCH_REDIS_URL")
    if database_url and redis_url:
        yield from _fresh(database_url, redis_url, name)
        return
    data_dir = Path(os.environ.get("PLANTSTREAM_DATA_DIR", ".plantstream"))
    with _one_run_at_a_time(data_dir):  # before the servers start: a second run touches nothing
        started_db, started_redis = EmbeddedServices(data_dir).start()
        yield from _fresh(
            database_url or with_database(started_db, "postgres"),
            redis_url or started_redis,
            name,
        )


_held: set[Path] = set()  # data directories this process holds (a run may nest its blocks)


@contextmanager
def _one_run_at_a_time(data_dir: Path) -> Iterator[None]:
    """Two benchmark runs on one embedded Redis would empty each other's state and streams
    mid-run (``flushdb``): their verdicts would then depend on when the other one started.
    A second run fails at once instead of measuring that."""
    key = data_dir.resolve()
    if key in _held:
        yield
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "bench.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServiceError(
                f"another benchmark is running on the embedded servers under {data_dir}: run "
                "one at a time, or give PLANTSTREAM_BENCH_DATABASE_URL/_REDIS_URL"
            ) from None
        _held.add(key)
        try:
            yield
        finally:
            _held.discard(key)


def _fresh(database_url: str, redis_url: str, name: str) -> Iterator[tuple[str, str]]:
    run_url = create_database(database_url, name)
    migrate(run_url)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    try:
        yield run_url, redis_url
    finally:
        drop_database(database_url, name)
