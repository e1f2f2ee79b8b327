"""What every request handler shares: settings, pools, the stream, caches, rate limits."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable

import redis
from psycopg_pool import ConnectionPool

from plantstream.ingest import IngestService
from plantstream.ingest.admission import InflightGate, RateLimiter
from plantstream.ingest.quotas import IngestQuotas
from plantstream.model import TimeWindow
from plantstream.settings import Settings
from plantstream.store.hot import HotState
from plantstream.store.keys import Principal, verify_key
from plantstream.stream.base import Stream


class KeyCache:
    """Verified keys for a few seconds, so the hot path does not query PostgreSQL each time.

    Entries are keyed by a digest of the key, never the key itself.
    """

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Principal | None:
        if self.ttl <= 0:
            return None
        digest = hashlib.sha256(key.encode()).digest()
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        digest = hashlib.sha256(key.encode()).digest()
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + self.ttl, principal)


class AppState:
    """What the routes share; parts not given are built from ``settings`` (no second defaults).

    Built by the runtime (``plantstream.runtime``); tests build one by hand on real servers.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        pool: ConnectionPool,
        redis: redis.Redis,
        stream: Stream,
        server_secret: bytes,
        window: TimeWindow,
        keys: KeyCache | None = None,
        limiter: RateLimiter | None = None,
        ingest_gate: InflightGate | None = None,
        previous_server_secret: bytes | None = None,  # still accepted while the secret rotates
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.server_secret = server_secret
        self.previous_server_secret = previous_server_secret
        self.keys = keys if keys is not None else KeyCache(settings.auth_cache_seconds)
        self._stream = stream
        self.ingest = IngestService(
            stream=stream,
            window=window,
            max_readings=settings.max_batch_readings,
            limiter=limiter if limiter is not None else RateLimiter(settings.rate_limit_per_key),
            gate=ingest_gate
            if ingest_gate is not None
            else InflightGate(settings.max_inflight_ingest),
            quotas=IngestQuotas.from_settings(settings, pool=pool),
        )

    # the ingest service's parts, reachable (and replaceable, in tests) from the state
    @property
    def stream(self) -> Stream:
        return self._stream

    @stream.setter
    def stream(self, stream: Stream) -> None:
        self._stream = self.ingest.stream = stream

    @property
    def window(self) -> TimeWindow:
        return self.ingest.window

    @property
    def limiter(self) -> RateLimiter:
        return self.ingest.limiter

    @limiter.setter
    def limiter(self, limiter: RateLimiter) -> None:
        self.ingest.limiter = limiter

    @property
    def ingest_gate(self) -> InflightGate:
        return self.ingest.gate

    @ingest_gate.setter
    def ingest_gate(self, gate: InflightGate) -> None:
        self.ingest.gate = gate

    @functools.cached_property
    def hot(self) -> HotState:
        return HotState(self.redis)

    def verify(self, key: str) -> Principal:
        cached = self.keys.get(key)
        if cached is not None:
            return cached
        # a short wait: with PostgreSQL away the caller gets a prompt 503, not a 30 s hang
        with self.pool.connection(timeout=2) as conn:
            principal = verify_key(
                conn,
                server_secret=self.server_secret,
                key=key,
                previous_secret=self.previous_server_secret,
            )
        self.keys.put(key, principal)
        return principal

    def close(self) -> None:
        self.pool.close()
        self.redis.close()


def open_pool(database_url: str | Callable[[], str], *, max_size: int = 8) -> ConnectionPool:
    """A pool; a callable URL is asked again for every new connection (rotated secrets)."""
    pool = ConnectionPool(
        database_url,
        min_size=1,
        max_size=max_size,
        open=False,
        kwargs={"autocommit": True},
        check=ConnectionPool.check_connection,
    )
    pool.open(wait=True, timeout=30)
    return pool


def ping_postgres(pool: ConnectionPool) -> None:
    with pool.connection(timeout=2) as conn:
        conn.execute("SELECT 1")


__all__ = ["AppState", "InflightGate", "KeyCache", "RateLimiter", "open_pool", "ping_postgres"]
