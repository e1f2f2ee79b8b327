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

import msgspec
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from plantstream.errors import StorageError
from plantstream.history import HistoryStore, store_history_batch
from plantstream.history.chunk import RowReject
from plantstream.ingest import IngestService
from plantstream.model import DEFAULT_CATALOG, ParsedBatch, Reading, TimeWindow
from plantstream.mqtt import metrics
from plantstream.store import batches
from plantstream.store.keys import Principal

DEFAULT_CHUNK_ROWS = 200_000  # PLANTSTREAM_HISTORY_CHUNK_ROWS' default
HISTORY_STREAM = "history"  # the dead letters' stream of readings the history store refused

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
    back to the raw retention horizon, exactly once, rollups exact, no detection.

    A batch is written in transactions of at most ``chunk_rows`` readings
    (``PLANTSTREAM_HISTORY_CHUNK_ROWS``), so live commits never wait long behind it. A reading
    the store refuses (past the retention horizon, the sensor quota, the bound of unclassified
    signals) has nobody to answer: it is kept in ``dead_letters`` (stream ``history``, the
    reading as JSON, its code and reason) and counted (``history_rejected`` in
    ``processor_counters``, ``plantstream_mqtt_rejected{path="history"}``), as the processor
    keeps what it refuses of the live path.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        store: HistoryStore,
        *,
        retention_days: int,
        window: TimeWindow,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        self.pool = pool
        self.store = store
        self.chunk_rows = chunk_rows
        # as far back as raw readings are kept; the live window's allowance into the future
        self._window = TimeWindow(
            max_past_us=retention_days * 86_400 * 1_000_000, max_future_us=window.max_future_us
        )

    @property
    def window(self) -> TimeWindow:
        return self._window

    def write_history(self, who: Principal, batch: ParsedBatch, *, received_us: int) -> None:
        # raises PushBackError (history_busy) while another history write of the facility
        # holds its lock: the bridge then retries the batch, acking nothing meanwhile (the
        # chunks written before are duplicates then, which PostgreSQL takes as such)
        refused: list[tuple[Reading, RowReject]] = []
        try:
            for start in range(0, len(batch.readings), self.chunk_rows):
                chunk = batch.readings[start : start + self.chunk_rows]
                answer = store_history_batch(
                    self.pool, self.store, ParsedBatch(batch.facility, chunk, [])
                )
                refused += [(chunk[r.row], r) for r in answer.rejected]
            if refused:
                self._keep_refused(who, batch.facility, refused, received_us)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            # PostgreSQL away or the pool exhausted: retried by the bridge, like the stream
            raise StorageError(f"history not stored yet: {type(exc).__name__}") from exc

    def _keep_refused(
        self,
        who: Principal,
        facility: str,
        refused: list[tuple[Reading, RowReject]],
        received_us: int,
    ) -> None:
        codes = Counter(r.code for _, r in refused)
        letters = [
            (
                who.key_id,
                f"{received_us}:{n}",
                facility,
                r.code,
                r.message,
                msgspec.json.encode(
                    {
                        "device": reading.device,
                        "metric": reading.metric,
                        "ts_us": reading.ts_us,
                        "value": reading.value,
                    }
                ),
            )
            for n, (reading, r) in enumerate(refused)
        ]
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            batches.insert_dead_letters(cur, stream=HISTORY_STREAM, letters=letters)
            batches.add_counters(cur, {(facility, "history_rejected"): len(refused)})
        for code, n in codes.items():
            metrics.REJECTED.labels("history", code).inc(n)
        metrics.READINGS.labels("history", "rejected").inc(len(refused))
        log.warning(
            "history of %s: %d readings refused by the store, kept in dead_letters (%s)",
            facility,
            len(refused),
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
        pool_of(max_size=2),
        store,
        retention_days=settings.raw_retention_days,
        window=window,
        chunk_rows=settings.history_chunk_rows,
    )
