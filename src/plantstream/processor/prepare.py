"""Reading a shard batch and making it ready to commit: decode, validate, resolve sensor ids,
create missing day partitions and encode the COPY streams (the prefetch thread's work).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt
from psycopg_pool import ConnectionPool

from plantstream.errors import ErrorCode
from plantstream.model import DEFAULT_CATALOG, SignalCatalog, SignalKind, TimeWindow
from plantstream.processor import metrics
from plantstream.processor.decode import Decoded, Flat, decode_records, reading_payload
from plantstream.processor.rows import Columns, DeadLetter, RowBatch
from plantstream.processor.writer import CopyReady, copy_ready
from plantstream.store.catalog import StoreCatalog
from plantstream.store.partitions import ensure_partitions
from plantstream.store.sensors import SensorKey, SensorRegistry
from plantstream.stream.base import StreamConsumer

_DAY_US = 86_400_000_000
KIND_CODES: dict[SignalKind, int] = {k: i for i, k in enumerate(SignalKind)}
_EPOCH_DAY = date(1970, 1, 1)
K = TypeVar("K")


class KindCache(Generic[K]):
    """Signals' rollup (kind code, wrap), as the catalog says, read once per key and kept
    a bounded while: the whole cache is forgotten every catalog ttl (a model applied in any
    process changes a signal's kind within two ttls), whenever the catalog forgets a facility
    (a model applied through it) and when it holds ``max_entries`` keys. A ``FixedCatalog``
    never changes: its kinds are only bounded."""

    def __init__(self, catalog: SignalCatalog, *, max_entries: int = 200_000) -> None:
        self.catalog = catalog
        self.max_entries = max_entries
        self._kinds: dict[K, tuple[int, float]] = {}
        store = catalog if isinstance(catalog, StoreCatalog) else None
        self._store = store
        self._ttl = store.ttl if store is not None else float("inf")
        self._clock = store.clock if store is not None else time.monotonic
        self._expires = self._clock() + self._ttl
        self._seen = store.invalidations if store is not None else 0

    def fresh(self) -> None:
        """Forget what may be stale (call once per batch, before its lookups)."""
        now = self._clock()
        seen = self._store.invalidations if self._store is not None else 0
        if now >= self._expires or seen != self._seen or len(self._kinds) >= self.max_entries:
            self._kinds.clear()
            self._expires, self._seen = now + self._ttl, seen

    def get(self, key: K, facility: str, metric: str) -> tuple[int, float]:
        known = self._kinds.get(key)
        if known is None:
            if len(self._kinds) >= self.max_entries:  # bounded within a batch too
                self._kinds.clear()
            spec = self.catalog.get(facility, metric)
            known = (0, 0.0) if spec is None else (KIND_CODES[spec.kind], float(spec.wrap or 0))
            self._kinds[key] = known
        return known

    def __len__(self) -> int:
        return len(self._kinds)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A shard batch read and decoded, ready to commit from checkpoint ``after``."""

    shard_id: str
    after: str | None
    checkpoint: str | None
    end_of_shard: bool
    record_count: int
    batch: RowBatch
    ready: CopyReady
    retry_after: float | None = None  # the stream pushed back: leave the shard alone this long


class BatchPreparer:
    """Turns stream reads into ``Prepared`` batches; takes a connection only for new sensors
    or days (so the prefetch thread rarely touches PostgreSQL).

    With ``max_sensors_per_facility``, a reading for a new sensor that does not fit its
    facility's quota is dead-lettered with ``quota_sensors`` (ingest refuses most of them
    first; this holds the quota for whatever slipped past an ingest process's view).
    """

    def __init__(
        self,
        *,
        stream: StreamConsumer,
        pool: ConnectionPool,
        window: TimeWindow,
        limit: int,
        max_sensors_per_facility: int | None = None,
        catalog: SignalCatalog = DEFAULT_CATALOG,
    ) -> None:
        self.catalog = catalog
        self.stream = stream
        self.pool = pool
        self.window = window
        self.limit = limit
        self.max_sensors_per_facility = max_sensors_per_facility
        self.registry = SensorRegistry()
        self.keys_by_id: dict[int, SensorKey] = {}  # ids never change: only ever grows
        self._known_days: set[int] = set()
        self._kinds: KindCache[int] = KindCache(catalog)  # by sensor id

    def prepare(self, shard_id: str, after: str | None) -> Prepared:
        """Read and decode the next batch of a shard after ``after``."""
        result = self.stream.read(shard_id, after, self.limit)
        if result.behind_ms is not None:
            metrics.SHARD_LAG_MS.labels(shard_id).set(result.behind_ms)
        checkpoint = result.records[-1].sequence if result.records else after
        decoded = decode_records(
            result.records, shard_id=shard_id, window=self.window, catalog=self.catalog
        )
        rows, facilities = self._columns(decoded, shard_id)
        if len(rows):
            self._ensure_days(set(np.unique(rows.ts_us // _DAY_US).tolist()))
        return Prepared(
            shard_id,
            after,
            checkpoint,
            result.end_of_shard,
            len(result.records),
            RowBatch(rows, facilities, decoded.dead_letters, decoded.counters),
            copy_ready(rows),
            result.retry_after,
        )

    def _columns(self, decoded: Decoded, shard_id: str) -> tuple[Columns, list[str]]:
        """The decoded readings as one set of columns, with sensor ids resolved."""
        flat = decoded.flat
        if not len(flat):
            return Columns.empty(), []
        keys, at = _sensor_keys(flat)
        wanted = set(keys)
        ids = self.registry.known(wanted)
        if ids is None:
            with self.pool.connection() as conn:
                ids = self.registry.resolve(
                    conn,
                    wanted,
                    max_per_facility=self.max_sensors_per_facility,
                    catalog=self.catalog,
                )
            for key, sensor_id in ids.items():
                self.keys_by_id[sensor_id] = key
            if len(ids) < len(wanted):
                refused = np.array([key not in ids for key in keys])[at]
                _refuse_unregistered(decoded, refused, shard_id, self.max_sensors_per_facility)
                flat = decoded.flat
                if not len(flat):
                    return Columns.empty(), []
                keys, at = _sensor_keys(flat)
        # facility codes in the order the facilities' first readings come
        facilities: dict[str, int] = {}
        codes = np.zeros(len(flat.facility), dtype=np.int32)
        for r in np.unique(flat.record).tolist():
            codes[r] = facilities.setdefault(flat.facility[r], len(facilities))
        rows = Columns(
            np.array([ids[key] for key in keys], dtype=np.int32)[at],
            flat.ts_us,
            flat.values,
            flat.quality.astype(np.int16),
            codes[flat.record],
            flat.received_us,
        )
        if flat.vtype is not None:
            rows.vtype, rows.ivalue, rows.text, rows.qcode = (
                flat.vtype,
                flat.ints,
                flat.texts,
                flat.qcode,
            )
        self._add_kinds(rows)
        return rows, list(facilities)

    def _add_kinds(self, rows: Columns) -> None:
        """Each row's rollup kind and wrap, from its sensor's signal (left None when every
        sensor of the batch is a gauge: the common case costs one lookup per sensor)."""
        sensors = np.unique(rows.sensor_id)
        self._kinds.fresh()
        kinds = [self._kind_of(int(s)) for s in sensors.tolist()]
        if not any(k for k, _ in kinds):
            return
        at = np.searchsorted(sensors, rows.sensor_id)
        rows.kind = np.array([k for k, _ in kinds], dtype=np.int16)[at]
        rows.wrap = np.array([w for _, w in kinds], dtype=np.float64)[at]

    def _kind_of(self, sensor_id: int) -> tuple[int, float]:
        facility, _, metric = self.keys_by_id[sensor_id]
        return self._kinds.get(sensor_id, facility, metric)

    def _ensure_days(self, days: set[int]) -> None:
        missing = days - self._known_days
        if missing:
            with self.pool.connection() as conn:
                ensure_partitions(conn, [_EPOCH_DAY + timedelta(days=d) for d in missing])
            self._known_days |= missing


def _sensor_keys(flat: Flat) -> tuple[list[SensorKey], npt.NDArray[np.intp]]:
    """The (facility, device, metric) of every sensor the rows name, and each row's index
    into that list. Records repeat a few devices' metric lists (one request after another),
    so each distinct (facility, device, metric list) gets its names side by side once, and a
    row's sensor is its list's offset plus its metric index: a table look-up, with no sort,
    as large as the distinct lists."""
    offsets: dict[tuple[str, str, tuple[str, ...]], int] = {}
    names: list[SensorKey] = []  # every listed metric of each distinct list, side by side
    of_record: list[int] = []
    for facility, device, listed in zip(flat.facility, flat.device, flat.metrics, strict=True):
        key = (facility, device, tuple(listed))
        offset = offsets.get(key)
        if offset is None:
            offset = offsets[key] = len(names)
            names.extend((facility, device, metric) for metric in listed)
        of_record.append(offset)
    # the check refused any metric index past its record's list: each row's is in it
    pair = np.array(of_record, dtype=np.intp)[flat.record] + flat.metric_idx
    used = np.flatnonzero(np.bincount(pair, minlength=len(names)))
    at = np.zeros(len(names), dtype=np.intp)
    at[used] = np.arange(len(used))
    return [names[code] for code in used.tolist()], at[pair]


def _refuse_unregistered(
    decoded: Decoded, refused: npt.NDArray[np.bool_], shard_id: str, limit: int | None
) -> None:
    """Move the ``refused`` rows (sensors the registry refused: past their facility's quota)
    from ``decoded.flat`` to its dead letters, keeping the books: accepted -> rejected."""
    reason = f"the facility has reached its quota of {limit} sensors"
    flat = decoded.flat
    per_facility: Counter[str] = Counter()
    for i in np.flatnonzero(refused).tolist():
        r = int(flat.record[i])
        facility = flat.facility[r]
        per_facility[facility] += 1
        decoded.dead_letters.append(
            DeadLetter(
                shard_id,
                flat.sequence[r],
                facility,
                ErrorCode.QUOTA_SENSORS,
                reason,
                reading_payload(facility, flat.reading(i)),
            )
        )
    for facility, n in per_facility.items():
        decoded.counters[(facility, "accepted")] -= n
        decoded.counters[(facility, "rejected")] += n
        decoded.counters[(facility, f"rejected:{ErrorCode.QUOTA_SENSORS}")] += n
    decoded.flat = flat.take(~refused)
