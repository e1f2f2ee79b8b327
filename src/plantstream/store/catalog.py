"""The store-backed signal catalog: each facility's declared signals, cached for a short while.

A facility's definitions are read once and kept ``ttl`` seconds (a model applied in another
process is in force within that time; one applied through this process's own catalog at
once, ``invalidate``). A name the facility does not have is looked up again at most once per
``miss_refresh`` seconds, so a signal declared a moment ago is not refused for a whole ttl.
The cache is bounded twice: ``max_facilities`` facilities and ``max_signals`` definitions in
all (least recently used facilities go first). A name the facility does not declare falls back
to ``DEFAULT_SIGNALS``, so a fresh install, and every facility without a model, behaves as
before. When PostgreSQL is away the last definitions read stay in use; with none, the error is
raised (ingest answers 503: the sender retries, nothing is refused for a missing model).

Ingest validates each batch against ``batch()``: one lookup of the facility per batch, then
plain dict reads per reading. Ingest decodes on the event loop, so its catalog is built with
``background=True``: an expired or missed entry is read again on a worker thread while the
one in hand keeps serving, and only a facility's very first lookup waits for PostgreSQL. The
processor's (``background=False``) reads again in line: it must never refuse what ingest took.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

from plantstream.model.signals import (
    DEFAULT_SIGNALS,
    SignalDef,
    UnknownSignalPolicy,
)
from plantstream.settings import Settings
from plantstream.store import signal_defs

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0  # seconds a lookup waits for a connection: a prompt 503, not a hang


@dataclass(frozen=True, slots=True)
class _Entry:
    signals: Mapping[str, SignalDef]  # the defaults overridden by the facility's own rows
    policy: UnknownSignalPolicy
    loaded_at: float


class StoreCatalog:
    """A ``SignalCatalog`` read from ``signal_defs`` and ``facility_settings``."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        ttl: float = 5.0,
        max_facilities: int = 1024,
        max_signals: int = 200_000,
        miss_refresh: float = 1.0,
        background: bool = False,
        defaults: Mapping[str, SignalDef] = DEFAULT_SIGNALS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._max = max_facilities
        self._max_signals = max_signals
        self._miss_refresh = min(miss_refresh, ttl)
        self._defaults = dict(defaults)
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._held = 0  # definitions held by the cached entries, beyond the shared defaults
        self._lock = threading.Lock()
        self._background = background
        self._refreshing: set[str] = set()
        self._full: dict[str, float] = {}  # facility -> until when its unclassified are full
        self._executor: ThreadPoolExecutor | None = None
        self.invalidations = 0  # how many times ``invalidate`` was called (caches built on it)

    @property
    def ttl(self) -> float:
        """Seconds a facility's definitions are kept before they are read again."""
        return self._ttl

    @property
    def clock(self) -> Callable[[], float]:
        """The monotonic clock the ttl is counted on."""
        return self._clock

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        pool: ConnectionPool,
        *,
        background: bool = False,
        miss_refresh: float = 1.0,
    ) -> StoreCatalog:
        """The catalog with ``PLANTSTREAM_CATALOG_TTL_SECONDS``, ``..._MAX_FACILITIES`` and
        ``..._MAX_SIGNALS``."""
        return cls(
            pool,
            ttl=settings.catalog_ttl_seconds,
            max_facilities=settings.catalog_max_facilities,
            max_signals=settings.catalog_max_signals,
            background=background,
            miss_refresh=miss_refresh,
        )

    def close(self) -> None:
        """Stop the background refreshes (the pool is the caller's)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def get(self, facility: str, name: str) -> SignalDef | None:
        """The facility's definition of ``name``, else the default one, else None."""
        entry = self._entry(facility)
        found = entry.signals.get(name)
        if found is None:
            entry = self._after_miss(facility, entry)
            found = entry.signals.get(name)
        return found

    def policy(self, facility: str) -> UnknownSignalPolicy:
        return self._entry(facility).policy

    def signals(self, facility: str) -> dict[str, SignalDef]:
        """Every signal the facility may send: the defaults, overridden by its own."""
        return dict(self._entry(facility).signals)

    def batch(self, allowed: Callable[[str], bool] | None = None) -> BatchCatalog:
        """A view for validating one batch: the facility is looked up once, on first use.

        ``allowed`` (the sender's ``may_access``): a facility it refuses is never read from
        PostgreSQL nor cached (its batch is refused 403 anyway): a key cannot make the server
        read, or evict, other facilities' catalogs."""
        return BatchCatalog(self, allowed)

    def register(self, facility: str, name: str, unit: str = "") -> SignalDef | None:
        """What the ``register`` policy does with ``name``: record it as unclassified (for an
        admin to review) and answer its definition; None when the facility holds its bound
        of unclassified signals already (the reading must then be refused, not dropped).

        A facility found full is remembered for ``ttl`` seconds: its new names are refused
        without asking PostgreSQL again (a sender of ever new names costs no writes)."""
        now = self._clock()
        with self._lock:
            if self._full.get(facility, -1.0) > now:
                return None
        with self._pool.connection(timeout=CONNECT_TIMEOUT) as conn:
            if not signal_defs.register_unclassified(
                conn=conn, facility=facility, name=name, unit=unit
            ):
                with self._lock:
                    self._full[facility] = now + self._ttl
                    while len(self._full) > self._max:  # bounded like the entries
                        del self._full[next(iter(self._full))]
                return None
        self.invalidate(facility)
        return self.get(facility, name)

    def register_many(self, facility: str, names: list[str]) -> set[str]:
        """``register`` for the new names of one batch, in one PostgreSQL transaction;
        returns the names refused (past the facility's bound of unclassified signals)."""
        now = self._clock()
        with self._lock:
            if self._full.get(facility, -1.0) > now:
                return set(names)
        with self._pool.connection(timeout=CONNECT_TIMEOUT) as conn:
            refused = signal_defs.register_many(conn=conn, facility=facility, names=names)
        if len(refused) < len(set(names)):
            self.invalidate(facility)  # the next lookup reads the new rows
        if refused:
            with self._lock:
                self._full[facility] = now + self._ttl
                while len(self._full) > self._max:  # bounded like the entries
                    del self._full[next(iter(self._full))]
        return refused

    def invalidate(self, facility: str | None = None) -> None:
        """Forget one facility (after applying its model here) or all of them."""
        with self._lock:
            self.invalidations += 1
            if facility is None:
                self._entries.clear()
                self._full.clear()
                self._held = 0
            else:
                self._full.pop(facility, None)
                gone = self._entries.pop(facility, None)
                if gone is not None:
                    self._held -= self._size(gone)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _entry(self, facility: str) -> _Entry:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(facility)
            if entry is not None and now - entry.loaded_at < self._ttl:
                self._entries.move_to_end(facility)
                return entry
        if entry is not None and self._background:
            self._in_background(facility)
            return entry
        return self._refresh(facility, entry, now)

    def _after_miss(self, facility: str, entry: _Entry) -> _Entry:
        """``entry`` read again if it is older than ``miss_refresh`` (a name just declared)."""
        now = self._clock()
        if now - entry.loaded_at < self._miss_refresh:
            return entry
        if self._background:
            self._in_background(facility)
            return entry
        return self._refresh(facility, entry, now)

    def _in_background(self, facility: str) -> None:
        with self._lock:
            if facility in self._refreshing:
                return
            self._refreshing.add(facility)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="catalog")
            executor = self._executor
        try:
            executor.submit(self._refresh_later, facility)
        except RuntimeError:  # shut down: the entry in hand keeps serving
            with self._lock:
                self._refreshing.discard(facility)

    def _refresh_later(self, facility: str) -> None:
        try:
            with self._lock:
                entry = self._entries.get(facility)
            self._refresh(facility, entry, self._clock())
        except Exception:  # the entry in hand keeps serving; the next expiry tries again
            log.exception("refreshing the signal catalog of %s failed", facility)
        finally:
            with self._lock:
                self._refreshing.discard(facility)

    def _refresh(self, facility: str, entry: _Entry | None, now: float) -> _Entry:
        try:
            fresh = self._load(facility, now)
        except psycopg.Error:
            if entry is None:
                raise
            log.warning("signal catalog of %s not refreshed (PostgreSQL); last one kept", facility)
            fresh = _Entry(entry.signals, entry.policy, now)  # retried after ttl, not per call
        with self._lock:
            old = self._entries.pop(facility, None)
            if old is not None:
                self._held -= self._size(old)
            self._entries[facility] = fresh
            self._held += self._size(fresh)
            while len(self._entries) > 1 and (
                len(self._entries) > self._max or self._held > self._max_signals
            ):
                _, evicted = self._entries.popitem(last=False)
                self._held -= self._size(evicted)
        return fresh

    def _size(self, entry: _Entry) -> int:
        return max(0, len(entry.signals) - len(self._defaults))

    def _load(self, facility: str, now: float) -> _Entry:
        with self._pool.connection(timeout=CONNECT_TIMEOUT) as conn:
            own = signal_defs.facility_signals(conn=conn, facility=facility)
            policy = signal_defs.facility_policy(conn=conn, facility=facility)
        signals = {**self._defaults, **own} if own else self._defaults
        return _Entry(signals, policy or UnknownSignalPolicy.REFUSE, now)


class BatchCatalog:
    """The catalog one batch is validated against (``StoreCatalog.batch``).

    The facility's definitions are fetched on the batch's first lookup and kept for the
    batch, so a reading costs a dict read. A signal the ``register`` policy let in but nobody
    declared (unclassified) is answered as unknown: the facility's policy decides over it
    again (accepted under ``register``, in whatever unit it comes; refused under ``refuse``).
    ``unknown`` collects the names answered unknown, for ``register`` to record.
    """

    __slots__ = ("_allowed", "_facility", "_missed", "_policy", "_signals", "_store", "unknown")

    def __init__(self, store: StoreCatalog, allowed: Callable[[str], bool] | None = None) -> None:
        self._store = store
        self._allowed = allowed
        self._facility: str | None = None
        self._signals: Mapping[str, SignalDef] = {}
        self._policy = UnknownSignalPolicy.REFUSE
        self._missed = False
        self.unknown: dict[str, bool] = {}  # name -> recorded already (unclassified)

    def get(self, facility: str, name: str) -> SignalDef | None:
        if facility != self._facility:
            self._use(facility)
        found = self._signals.get(name)
        if found is None and not self._missed and self._allowed_here():
            self._missed = True  # at most one look again per batch
            entry = self._store._after_miss(facility, self._store._entry(facility))
            self._signals, self._policy = entry.signals, entry.policy
            found = self._signals.get(name)
        if found is None or found.unclassified:
            self.unknown[name] = found is not None
            return None
        return found

    def policy(self, facility: str) -> UnknownSignalPolicy:
        if facility != self._facility:
            self._use(facility)
        return self._policy

    def new_unknown(self) -> list[str]:
        """The names answered unknown that no unclassified row records yet."""
        return [name for name, recorded in self.unknown.items() if not recorded]

    def _allowed_here(self) -> bool:
        return self._allowed is None or self._facility is None or self._allowed(self._facility)

    def _use(self, facility: str) -> None:
        self._facility, self._missed, self.unknown = facility, False, {}
        if not self._allowed_here():
            self._signals, self._policy = self._store._defaults, UnknownSignalPolicy.REFUSE
            return
        entry = self._store._entry(facility)
        self._signals, self._policy = entry.signals, entry.policy


__all__ = ["BatchCatalog", "StoreCatalog"]
