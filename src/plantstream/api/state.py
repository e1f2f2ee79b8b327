"""What every request handler shares: settings, pools, the stream, caches, rate limits."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import redis
from psycopg_pool import ConnectionPool

from plantstream.errors import AuthError
from plantstream.ingest import IngestService
from plantstream.ingest.admission import InflightGate, RateLimiter
from plantstream.ingest.quotas import IngestQuotas
from plantstream.model import TimeWindow
from plantstream.model.signals import SignalCatalog
from plantstream.settings import Settings
from plantstream.store.catalog import StoreCatalog
from plantstream.store.hot import HotState
from plantstream.store.keys import Principal, parse_key, verify_key
from plantstream.stream.base import Stream

T = TypeVar("T")


class KeyCache:
    """Verified keys for a few seconds, so the hot path does not query PostgreSQL each time.

    Refused keys (unknown, wrong secret, revoked, expired) are remembered too, for
    ``negative_ttl_seconds``: a flood of one made-up but well-formed key then costs one
    lookup per that many seconds, not one per request. Entries are keyed by a digest of the
    key, never the key itself; at most ``max_entries`` of each kind are kept (oldest go first).
    """

    def __init__(
        self,
        ttl_seconds: float,
        *,
        negative_ttl_seconds: float = 0.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl_seconds
        self.negative_ttl = negative_ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()
        self._refused: OrderedDict[bytes, tuple[float, AuthError]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    def get(self, key: str) -> Principal | None:
        """The cached principal of ``key``; raises its cached ``AuthError`` if it was refused."""
        if self.ttl <= 0 and self.negative_ttl <= 0:
            return None
        digest, now = self._digest(key), self._clock()
        with self._lock:
            entry = self._entries.get(digest)
            refused = self._refused.get(digest)
        if refused is not None and refused[0] >= now:
            error = refused[1]
            raise AuthError(error.code, error.message, status=error.status)
        if entry is None or entry[0] < now:
            return None
        return entry[1]

    def put(self, key: str, principal: Principal) -> None:
        if self.ttl > 0:
            self._remember(self._entries, key, (self._clock() + self.ttl, principal))

    def refuse(self, key: str, error: AuthError) -> None:
        """Remember that ``key`` was refused with ``error``."""
        if self.negative_ttl > 0:
            self._remember(self._refused, key, (self._clock() + self.negative_ttl, error))

    def _remember(
        self, entries: OrderedDict[bytes, tuple[float, T]], key: str, entry: tuple[float, T]
    ) -> None:
        digest = self._digest(key)
        with self._lock:
            entries[digest] = entry
            entries.move_to_end(digest)
            while len(entries) > self.max_entries:
                entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries) + len(self._refused)


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
        catalog: SignalCatalog | None = None,  # each facility's signals; the store's if None
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.server_secret = server_secret
        self.previous_server_secret = previous_server_secret
        self.keys = (
            keys
            if keys is not None
            else KeyCache(
                settings.auth_cache_seconds,
                negative_ttl_seconds=settings.auth_negative_cache_seconds,
                max_entries=settings.auth_cache_max_entries,
            )
        )
        self._stream = stream
        self.ingest = IngestService(
            stream=stream,
            window=window,
            max_readings=settings.max_batch_readings,
            limiter=limiter if limiter is not None else RateLimiter(settings.rate_limit_per_key),
            gate=ingest_gate
            if ingest_gate is not None
            else InflightGate(settings.max_inflight_ingest),
            quotas=IngestQuotas.from_settings(settings, pool=pool, redis_client=redis),
            catalog=catalog
            if catalog is not None
            else StoreCatalog.from_settings(settings, pool, background=True),
        )

    # the ingest service's parts, reachable (and replaceable, in tests) from the state
    @property
    def stream(self) -> Stream:
        return self._stream

    @stream.setter
    def stream(self, stream: Stream) -> None:
        self._stream = self.ingest.stream = stream

    @property
    def catalog(self) -> SignalCatalog:
        """The signal catalog ingest validates against and the query routes type values by."""
        return self.ingest.catalog

    @catalog.setter
    def catalog(self, catalog: SignalCatalog) -> None:
        self.ingest.catalog = catalog

    def model_changed(self, facility: str) -> None:
        """A model was applied here: its signals are in force for the next batch."""
        if isinstance(self.ingest.catalog, StoreCatalog):
            self.ingest.catalog.invalidate(facility)

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
        cached = self.keys.get(key)  # raises at once for a key refused moments ago
        if cached is not None:
            return cached
        parse_key(key)  # a malformed key is refused without taking a connection
        # a short wait: with PostgreSQL away the caller gets a prompt 503, not a 30 s hang
        with self.pool.connection(timeout=2) as conn:
            try:
                principal = verify_key(
                    conn,
                    server_secret=self.server_secret,
                    key=key,
                    previous_secret=self.previous_server_secret,
                )
            except AuthError as refused:
                self.keys.refuse(key, refused)
                raise
        self.keys.put(key, principal)
        return principal

    def close(self) -> None:
        if self.ingest.quotas.backlog is not None:
            self.ingest.quotas.backlog.close()  # what was accepted is counted first
        if isinstance(self.ingest.catalog, StoreCatalog):
            self.ingest.catalog.close()
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
