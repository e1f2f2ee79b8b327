"""The composition root: one ``Runtime`` per process, built from ``Settings``.

It resolves endpoints and credentials once and builds everything a role runs on.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence

import psycopg
import redis
from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from plantstream.api import AppState, create_app
from plantstream.api.state import open_pool
from plantstream.local import EmbeddedServices, Endpoints, resolve_endpoints
from plantstream.local.watchdog import watch_embedded
from plantstream.model import TimeWindow
from plantstream.processor import Processor
from plantstream.runtime.clients import (
    REDIS_OPTIONS,
    open_redis,
    previous_server_secret,
    server_secret,
)
from plantstream.runtime.processing import build_processor
from plantstream.settings import Settings
from plantstream.store.catalog import StoreCatalog
from plantstream.store.partitions import ensure_window
from plantstream.store.schema import migrate
from plantstream.stream.base import Stream
from plantstream.stream.factory import open_stream

log = logging.getLogger(__name__)


class Runtime:
    """Everything a plantstream process runs on, built on first use and closed together.

    The API state and the processor each get their own stream and Redis clients, so that
    one's closing or blocking never reaches the other.
    """

    def __init__(self, settings: Settings, *, endpoints: Endpoints | None = None) -> None:
        self.settings = settings
        self.endpoints = endpoints if endpoints is not None else resolve_endpoints(settings)
        self._closing: list[Callable[[], None]] = []

    @classmethod
    def embedded(cls, settings: Settings) -> Runtime:
        """A runtime on embedded PostgreSQL and Redis under ``settings.data_dir`` (started
        or reused), whatever URLs the environment names: the demo's."""
        services = EmbeddedServices(
            settings.data_dir, redis_maxmemory_mb=settings.embedded_redis_maxmemory_mb
        )
        database_url, redis_url = services.start()
        endpoints = Endpoints(
            database_url, redis_url, services, embedded_servers=("postgres", "redis")
        )
        return cls(settings, endpoints=endpoints)

    # -- what is resolved once -------------------------------------------------------

    @property
    def database_url(self) -> str:
        return self.endpoints.database_url

    @property
    def redis_url(self) -> str:
        return self.endpoints.redis_url

    @functools.cached_property
    def window(self) -> TimeWindow:
        """How far from the receiving clock a timestamp may be: ingest and processor alike."""
        return TimeWindow(
            max_past_us=self.settings.max_past_seconds * 1_000_000,
            max_future_us=self.settings.max_future_seconds * 1_000_000,
        )

    @functools.cached_property
    def server_secret(self) -> bytes:
        return server_secret(self.settings)

    # -- clients: a new one per call, closed with the runtime when asked ------------

    def connect(self, _url: object = None) -> psycopg.Connection:
        """An autocommit PostgreSQL connection (credentials re-read as they rotate)."""
        return self.endpoints.connect()

    def redis(self, purpose: str) -> redis.Redis:
        """A Redis client with the options of ``purpose`` (``state``, ``processor``, ``stream``)."""
        return open_redis(
            self.redis_url,
            cluster=self.settings.redis_cluster,
            credentials=self.endpoints.redis_auth,
            **REDIS_OPTIONS[purpose],
        )

    def stream(self) -> Stream:
        """The configured stream (created on Redis if it does not exist)."""
        return open_stream(self.settings, redis_client=self.redis("stream"))

    def pool(self, *, max_size: int = 8) -> ConnectionPool:
        return open_pool(self.endpoints.conninfo, max_size=max_size)

    # -- what a role runs ------------------------------------------------------------

    def migrate(self) -> str:
        """Apply schema migrations (idempotent); returns the schema revision."""
        return migrate(self.database_url)

    def ensure_partitions(self) -> list[str]:
        """Create the raw partitions the timestamp window can reach; returns those created."""
        with self.connect() as conn:
            return ensure_window(conn, past_days=self.settings.max_past_seconds // 86400 + 1)

    @functools.cached_property
    def processor_catalog(self) -> StoreCatalog:
        """Each facility's signal definitions for the processor: read in line on an expiry
        and on every miss (a name ingest let in is in PostgreSQL before its reading is in the
        stream, so the processor never refuses what ingest took), on a pool of its own."""
        return self._catalog(miss_refresh=0.0)

    @functools.cached_property
    def signal_catalog(self) -> StoreCatalog:
        """Each facility's signal definitions for the MQTT bridge (threads, not an event
        loop: read in line; a missed name is looked up again at most once a second)."""
        return self._catalog(miss_refresh=1.0)

    def _catalog(self, *, miss_refresh: float) -> StoreCatalog:
        pool = self.pool(max_size=2)
        catalog = StoreCatalog.from_settings(self.settings, pool, miss_refresh=miss_refresh)
        self._closing.append(pool.close)
        self._closing.append(catalog.close)
        return catalog

    @functools.cached_property
    def state(self) -> AppState:
        """What the web routes share (built once; closed with the runtime). Its catalog
        refreshes in the background: ingest decodes on the event loop."""
        pool = self.pool()
        state = AppState(
            settings=self.settings,
            pool=pool,
            redis=self.redis("state"),
            stream=self.stream(),
            server_secret=self.server_secret,
            window=self.window,
            previous_server_secret=previous_server_secret(self.settings),
            catalog=StoreCatalog.from_settings(self.settings, pool, background=True),
        )
        self._closing.append(state.close)
        return state

    def app(self, surfaces: Sequence[str]) -> FastAPI:
        """The web app serving ``surfaces`` (see ``plantstream.api.app.SURFACES``)."""
        return create_app(self.state, surfaces=surfaces)

    @functools.cached_property
    def processor(self) -> Processor:
        """The processor of the configured stream, with its hooks (built once; shut down
        with the runtime if its ``run`` did not already)."""
        processor = build_processor(
            self.settings,
            database_url=self.database_url,
            conninfo=self.endpoints.conninfo,
            stream=self.stream(),
            redis_client=self.redis("processor"),
            window=self.window,
            connect=self.connect,
            catalog=self.processor_catalog,
            endpoints=self.endpoints,
        )
        self._closing.append(processor.shutdown)
        return processor

    def start_processor(self, stop: threading.Event) -> threading.Thread:
        """Run the processor on a thread until ``stop`` is set."""
        thread = threading.Thread(
            target=self.processor.run, args=(stop,), name="processor", daemon=True
        )
        thread.start()
        return thread

    def watch(self, stop: threading.Event) -> threading.Thread | None:
        """Watch the embedded servers (if any): a full disk stops them, this brings them back."""
        return watch_embedded(self.endpoints, stop)

    def close(self) -> None:
        """Close what was built, newest first."""
        while self._closing:
            closer = self._closing.pop()
            try:
                closer()
            except Exception:  # closing the rest matters more than one failure
                log.exception("closing %s failed", closer)
