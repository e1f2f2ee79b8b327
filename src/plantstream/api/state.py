"""What every request handler shares: settings, pools, the stream, caches, rate limits."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from psycopg_pool import ConnectionPool

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


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second, bursts up to twice that."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * 2)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def admit(self, key_id: str) -> float:
        """0 if the request may go ahead, else the seconds to wait before retrying."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self.rate


class InflightGate:
    """At most ``limit`` requests inside at once; the rest are turned away, not queued.

    Turning away is the point: a queue in front of a saturated server only grows memory and
    latency, while a 429 with Retry-After lets the gateway keep the batch and try again.
    Used from the event loop only, so a plain counter is enough.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inside = 0

    def try_enter(self) -> bool:
        if self.inside >= self.limit:
            return False
        self.inside += 1
        return True

    def leave(self) -> None:
        self.inside -= 1


@dataclass
class AppState:
    settings: Settings
    pool: ConnectionPool
    redis: redis.Redis
    stream: Stream
    server_secret: bytes
    window: TimeWindow
    keys: KeyCache = field(default_factory=lambda: KeyCache(10.0))
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(500.0))
    ingest_gate: InflightGate = field(default_factory=lambda: InflightGate(32))
    previous_server_secret: bytes | None = None  # still accepted while the secret rotates

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
