"""History readings into PostgreSQL through the processor's own batch write: rows by binary
COPY, duplicates and conflicts as a replay is handled, rollups merged from exactly the rows
newly stored (``processor/commit.py``, ``processor/writer.py``, ``store/batches.py``).

A thin adapter: the processor's commit also moves a shard checkpoint, which history has
none of, so the transaction here is the same steps without it. Each write holds the
facility's history lock (one history transaction per facility at a time, across processes)
and at most ``chunk_rows`` readings, so live ingest never waits long behind an import.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import numpy.typing as npt
import psycopg

from plantstream.errors import ErrorCode, PushBackError
from plantstream.history.chunk import Candidates
from plantstream.model import SignalCatalog
from plantstream.model.signals import UnknownSignalPolicy
from plantstream.processor import commit as processor_commit
from plantstream.processor.prepare import KindCache
from plantstream.processor.rollups import state_deltas
from plantstream.processor.rows import Columns, RowBatch
from plantstream.processor.writer import CopyReady, copy_ready, rollups_of
from plantstream.store import batches
from plantstream.store.catalog import StoreCatalog
from plantstream.store.partitions import ensure_partitions
from plantstream.store.sensors import SensorRegistry
from plantstream.store.signal_defs import MAX_UNCLASSIFIED

_DAY_US = 86_400_000_000
_EPOCH_DAY = date(1970, 1, 1)
_HISTORY_LOCK_CLASS = 0x70736869  # the per-facility history lock (two-integer form)


@dataclass(slots=True)
class Written:
    """What one write did: readings newly stored, already stored (duplicates; ``conflicts``
    of them with another value, kept in ``reading_conflicts``)."""

    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0


def retention_cutoff_us(retention_days: int, *, today: date | None = None) -> int:
    """The first microsecond the retention job keeps: it drops whole UTC days before it
    (``store/partitions.drop_expired``)."""
    day = (today or datetime.now(UTC).date()) - timedelta(days=retention_days)
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000


class HistoryStore:
    """Resolves sensors, makes partitions and writes candidate readings of one facility."""

    def __init__(
        self,
        *,
        catalog: SignalCatalog,
        retention_days: int,
        past_retention: bool = False,
        max_sensors_per_facility: int | None = None,
    ) -> None:
        self.catalog = catalog
        self.retention_days = retention_days
        self.past_retention = past_retention
        self.max_sensors = max_sensors_per_facility
        self.registry = SensorRegistry()
        self._known_days: set[int] = set()
        self._kinds: KindCache[tuple[str, str]] = KindCache(catalog)

    def screen(self, c: Candidates) -> Candidates:
        """``c`` less what is older than the retention horizon (refused with
        ``beyond_retention``, unless told to store it anyway)."""
        if self.past_retention or not len(c):
            return c
        old = c.ts_us < retention_cutoff_us(self.retention_days)
        if not old.any():
            return c
        c.reject(
            old,
            ErrorCode.BEYOND_RETENTION,
            f"older than the raw retention of {self.retention_days} days "
            "(PLANTSTREAM_RAW_RETENTION_DAYS): the retention job would drop it",
        )
        return c.take(~old)

    def write(
        self, conn: psycopg.Connection, facility: str, c: Candidates, *, wait: bool = True
    ) -> Written:
        """Store ``c`` (one facility, any size up to the caller's chunk bound) exactly once.

        ``wait=False`` raises ``PushBackError(history_busy)`` instead of waiting when
        another history write of the facility holds its lock.
        """
        ready = self.prepare(conn, facility, c)
        return Written() if ready is None else self.commit(conn, facility, ready, wait=wait)

    def prepare(
        self, conn: psycopg.Connection, facility: str, c: Candidates
    ) -> tuple[Columns, CopyReady] | None:
        """The CPU half of ``write`` (and new sensors and partitions, in short transactions
        of their own): ``c`` screened, its sensors resolved, encoded for COPY. None: nothing
        left to store. Refusals are added to ``c.rejects``."""
        c = self.screen(c)
        if not len(c):
            return None
        c = self._register_unknown(facility, c)
        if not len(c):
            return None
        sensor_id, c = self._sensor_ids(conn, facility, c)
        if not len(c):
            return None
        rows = self._columns(facility, c, sensor_id)
        days = set(np.unique(rows.ts_us // _DAY_US).tolist()) - self._known_days
        if days:
            ensure_partitions(conn, [_EPOCH_DAY + timedelta(days=d) for d in days])
            self._known_days |= days
        return rows, copy_ready(rows)

    def commit(
        self,
        conn: psycopg.Connection,
        facility: str,
        prepared: tuple[Columns, CopyReady],
        *,
        wait: bool = True,
    ) -> Written:
        """Write what ``prepare`` made, in one transaction under the facility's lock."""
        rows, ready = prepared
        return _store(conn, facility, rows, ready, wait=wait)

    def _register_unknown(self, facility: str, c: Candidates) -> Candidates:
        """Under the ``register`` policy, record the new names of ``c`` as unclassified (for
        an admin's review, ``GET /v1/assets/unclassified``) before anything is stored, as live
        ingest does (``ingest/unclassified.py``); readings of a name past the facility's bound
        of unclassified signals are refused ``unknown_metric``, never dropped."""
        catalog = self.catalog
        if not isinstance(catalog, StoreCatalog):
            return c
        if catalog.policy(facility) is not UnknownSignalPolicy.REGISTER:
            return c
        used = np.unique(c.metric).tolist()
        # a name recorded already answers its unclassified definition, a new one None
        new = [c.metrics[m] for m in used if catalog.get(facility, c.metrics[m]) is None]
        refused = catalog.register_many(facility, new) if new else set()
        if not refused:
            return c
        out = np.isin(c.metric, [i for i, name in enumerate(c.metrics) if name in refused])
        c.reject(
            out,
            ErrorCode.UNKNOWN_METRIC,
            f"the facility holds {MAX_UNCLASSIFIED} unclassified signals already: declare them "
            "in its model (unknown_metric)",
        )
        return c.take(~out)

    def _sensor_ids(
        self, conn: psycopg.Connection, facility: str, c: Candidates
    ) -> tuple[npt.NDArray[np.int32], Candidates]:
        pair = c.device.astype(np.int64) * len(c.metrics) + c.metric
        unique, inverse = np.unique(pair, return_inverse=True)
        keys = [
            (facility, c.devices[int(p) // len(c.metrics)], c.metrics[int(p) % len(c.metrics)])
            for p in unique.tolist()
        ]
        ids = self.registry.known(keys)
        if ids is None:
            ids = self.registry.resolve(
                conn, keys, max_per_facility=self.max_sensors, catalog=self.catalog
            )
        table = np.array([ids.get(k, -1) for k in keys], dtype=np.int32)
        sensor_id = table[inverse]
        refused = sensor_id < 0
        if refused.any():
            c.reject(
                refused,
                ErrorCode.QUOTA_SENSORS,
                f"the facility has reached its quota of {self.max_sensors} sensors",
            )
            return sensor_id[~refused], c.take(~refused)
        return sensor_id, c

    def _columns(self, facility: str, c: Candidates, sensor_id: npt.NDArray[np.int32]) -> Columns:
        n = len(c)
        rows = Columns(
            sensor_id,
            c.ts_us,
            c.value,
            c.quality if c.quality is not None else np.zeros(n, dtype=np.int16),
            np.zeros(n, dtype=np.int32),
            np.zeros(n, dtype=np.int64),
        )
        if c.vtype is not None:
            rows.vtype, rows.ivalue, rows.text = c.vtype, c.ivalue, c.text
            rows.qcode = c.qcode if c.qcode is not None else np.full(n, -1, dtype=np.int64)
        self._kinds.fresh()
        kinds = [self._kinds.get((facility, name), facility, name) for name in c.metrics]
        if any(k for k, _ in kinds):
            rows.kind = np.array([k for k, _ in kinds], dtype=np.int16)[c.metric]
            rows.wrap = np.array([w for _, w in kinds], dtype=np.float64)[c.metric]
        return rows


def _store(
    conn: psycopg.Connection, facility: str, rows: Columns, ready: CopyReady, *, wait: bool
) -> Written:
    """The processor's commit steps 2-4 (``commit_batch``) for one facility's rows."""
    batch = RowBatch(rows, [facility])
    conflicts: Counter[str] = Counter()
    batches.create_session_tables(conn)  # IF NOT EXISTS: a pooled connection has them
    with conn.transaction(), conn.cursor() as cur:
        lock = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        got = cur.execute(
            f"SELECT {lock}(%s, hashtext(%s))", (_HISTORY_LOCK_CLASS, facility)
        ).fetchone()
        if not wait and not (got and got[0]):
            raise PushBackError(
                f"facility {facility!r} has a history write in progress; retry shortly",
                retry_after=1.0,
                code=ErrorCode.HISTORY_BUSY,
            )
        stored = processor_commit._store_readings(cur, ready, batch, conflicts)
        if ready.conflicts is not None and len(ready.conflicts):
            batches.insert_conflicts(cur, processor_commit._conflict_rows(ready.conflicts))
            conflicts[facility] += len(ready.conflicts)
        if len(stored):
            if stored is ready.unique:
                batches.merge_rollups(cur, ready.rollups, ready.states)
            else:
                batches.merge_rollups(cur, rollups_of(stored), state_deltas(stored))
        written = Written(len(stored), len(rows) - len(stored), conflicts[facility])
        counters = Counter(
            {
                (facility, "history_stored"): written.stored,
                (facility, "history_duplicate"): written.duplicates,
                (facility, "history_conflict"): written.conflicts,
            }
        )
        batches.add_counters(cur, +counters)
    return written
