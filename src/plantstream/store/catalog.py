"""The store-backed signal catalog: each facility's declared signals, cached for a short while.

Ingest and the processor look a signal up per reading, so a facility's definitions are read
once and kept ``ttl`` seconds (a model applied elsewhere is seen within that time); at most
``max_facilities`` facilities are cached (least recently used go first). A name the facility
does not declare falls back to ``DEFAULT_SIGNALS``, so a fresh install, and every facility
without a model, behaves as before. When PostgreSQL is away, the last definitions read are
kept in use rather than refusing every reading; with none, the error is raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
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


@dataclass(frozen=True, slots=True)
class _Entry:
    signals: Mapping[str, SignalDef]
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
        defaults: Mapping[str, SignalDef] = DEFAULT_SIGNALS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._max = max_facilities
        self._defaults = dict(defaults)
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, pool: ConnectionPool) -> StoreCatalog:
        """The catalog with ``PLANTSTREAM_CATALOG_TTL_SECONDS`` and ``..._MAX_FACILITIES``."""
        return cls(
            pool, ttl=settings.catalog_ttl_seconds, max_facilities=settings.catalog_max_facilities
        )

    def get(self, facility: str, name: str) -> SignalDef | None:
        """The facility's definition of ``name``, else the default one, else None."""
        found = self._entry(facility).signals.get(name)
        return found if found is not None else self._defaults.get(name)

    def policy(self, facility: str) -> UnknownSignalPolicy:
        return self._entry(facility).policy

    def signals(self, facility: str) -> dict[str, SignalDef]:
        """Every signal the facility may send: the defaults, overridden by its own."""
        return {**self._defaults, **self._entry(facility).signals}

    def register(self, facility: str, name: str, unit: str = "") -> SignalDef | None:
        """What the ``register`` policy does with ``name``: record it as unclassified (for an
        admin to review) and answer its definition; None when the facility holds its bound
        of unclassified signals already (the reading must then be refused, not dropped)."""
        with self._pool.connection() as conn:
            if not signal_defs.register_unclassified(
                conn=conn, facility=facility, name=name, unit=unit
            ):
                return None
        self.invalidate(facility)
        return self.get(facility, name)

    def invalidate(self, facility: str | None = None) -> None:
        """Forget one facility (after applying its model here) or all of them."""
        with self._lock:
            if facility is None:
                self._entries.clear()
            else:
                self._entries.pop(facility, None)

    def _entry(self, facility: str) -> _Entry:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(facility)
            if entry is not None and now - entry.loaded_at < self._ttl:
                self._entries.move_to_end(facility)
                return entry
        try:
            fresh = self._load(facility, now)
        except psycopg.Error:
            if entry is None:
                raise
            log.warning("signal catalog of %s not refreshed (PostgreSQL); last one kept", facility)
            fresh = _Entry(entry.signals, entry.policy, now)  # retried after ttl, not per call
        with self._lock:
            self._entries[facility] = fresh
            self._entries.move_to_end(facility)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return fresh

    def _load(self, facility: str, now: float) -> _Entry:
        with self._pool.connection() as conn:
            signals = signal_defs.facility_signals(conn=conn, facility=facility)
            policy = signal_defs.facility_policy(conn=conn, facility=facility)
        return _Entry(signals, policy or UnknownSignalPolicy.REFUSE, now)


__all__ = ["StoreCatalog"]
