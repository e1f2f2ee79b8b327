"""Where the bridge sends ``is_historical`` readings: a ``HistorySink``, given by the runtime.

A Sparkplug metric flagged ``is_historical`` (an edge node's store-and-forward replay) is not
live data: it may be far older than the live time window. The host judges it by the sink's
``window`` and the bridge hands it over with ``write_history`` before acknowledging the
message, exactly as live readings go to the stream. The default, ``LiveHistory``, puts it on
the live path (the stream) with the live window: older readings are refused
``timestamp_too_old`` and counted, never silently dropped. ``serve mqtt`` gives the bridge
``StoreHistory``: the ``POST /v1/readings/history`` path, straight into PostgreSQL.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Protocol

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from plantstream.errors import StorageError
from plantstream.history import HistoryStore, store_history_batch
from plantstream.ingest import IngestService
from plantstream.model import DEFAULT_CATALOG, ParsedBatch, TimeWindow
from plantstream.store.keys import Principal

log = logging.getLogger(__name__)


class HistorySink(Protocol):
    """Takes historical readings durably; the bridge acks their messages only after it."""

    @property
    def window(self) -> TimeWindow:
        """How far from the arrival time a historical reading may be."""
        ...

    def write_history(self, who: Principal, batch: ParsedBatch, *, received_us: int) -> None:
        """Make ``batch`` durable, or raise (``PlantstreamError``, ``OSError``) to be retried;
        the bridge acknowledges nothing of the batch meanwhile."""
        ...


class LiveHistory:
    """The default sink: historical readings go on the live path, in the live window."""

    def __init__(self, ingest: IngestService, window: TimeWindow) -> None:
        self.ingest = ingest
        self._window = window

    @property
    def window(self) -> TimeWindow:
        return self._window

    def write_history(self, who: Principal, batch: ParsedBatch, *, received_us: int) -> None:
        self.ingest.accept_decoded(who, batch, received_us=received_us)


class StoreHistory:
    """Historical readings written to PostgreSQL before the message is acknowledged, through
    the history path of ``POST /v1/readings/history`` (``plantstream.history``): any age
    back to the raw retention horizon, exactly once, rollups exact, no detection."""

    def __init__(
        self, pool: ConnectionPool, store: HistoryStore, *, retention_days: int, window: TimeWindow
    ) -> None:
        self.pool = pool
        self.store = store
        # as far back as raw readings are kept; the live window's allowance into the future
        self._window = TimeWindow(
            max_past_us=retention_days * 86_400 * 1_000_000, max_future_us=window.max_future_us
        )

    @property
    def window(self) -> TimeWindow:
        return self._window

    def write_history(self, who: Principal, batch: ParsedBatch, *, received_us: int) -> None:
        # raises PushBackError (history_busy) while another history write of the facility
        # holds its lock: the bridge then retries the batch, acking nothing meanwhile
        try:
            answer = store_history_batch(self.pool, self.store, batch)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            # PostgreSQL away or the pool exhausted: retried by the bridge, like the stream
            raise StorageError(f"history not stored yet: {type(exc).__name__}") from exc
        if answer.rejected:  # the host judged them already; what the store refuses is said
            codes = Counter(r.code for r in answer.rejected)
            log.warning(
                "history of %s: %d readings refused by the store (%s)",
                batch.facility,
                len(answer.rejected),
                ", ".join(f"{code}: {n}" for code, n in sorted(codes.items())),
            )


def store_history(runtime: object, window: TimeWindow) -> StoreHistory | None:
    """The history sink of a runtime with PostgreSQL (``pool`` and ``signal_catalog``), None
    for one without: historical readings then take the live path."""
    pool_of = getattr(runtime, "pool", None)
    settings = getattr(runtime, "settings", None)
    if pool_of is None or settings is None:
        return None
    catalog = getattr(runtime, "signal_catalog", DEFAULT_CATALOG)
    store = HistoryStore(
        catalog=catalog,
        retention_days=settings.raw_retention_days,
        max_sensors_per_facility=settings.quota_max_sensors_per_facility,
    )
    return StoreHistory(
        pool_of(max_size=2), store, retention_days=settings.raw_retention_days, window=window
    )
