"""PostgreSQL and Redis for a benchmark run: embedded unless URLs are given, always fresh.

``PLANTSTREAM_BENCH_DATABASE_URL`` / ``PLANTSTREAM_BENCH_REDIS_URL`` point a run at servers of
your own; otherwise the embedded servers under ``PLANTSTREAM_DATA_DIR`` (``.plantstream``) are used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

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
    if not database_url or not redis_url:
        services = EmbeddedServices(Path(os.environ.get("PLANTSTREAM_DATA_DIR", ".plantstream")))
        started_db, started_redis = services.start()
        database_url = database_url or with_database(started_db, "postgres")
        redis_url = redis_url or started_redis
    run_url = create_database(database_url, name)
    migrate(run_url)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    try:
        yield run_url, redis_url
    finally:
        drop_database(database_url, name)
