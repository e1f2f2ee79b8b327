"""The processor loop: own shards through leases, read, validate, commit, update Redis, detect.

Exactly-once effect: rows, rollups, dead letters, counters and the checkpoint commit together;
Redis and detection follow the commit and are idempotent, so a crash anywhere replays safely.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Protocol

import numpy as np
import psycopg
import redis

from plantstream.errors import LeaseLostError, StreamError
from plantstream.model import TimeWindow
from plantstream.processor import metrics
from plantstream.processor.decode import Decoded, decode_records
from plantstream.processor.leases import Lease, LeaseManager
from plantstream.processor.rows import Columns, RowBatch
from plantstream.processor.writer import CopyReady, commit_batch, copy_ready, prepare_connection
from plantstream.store.hot import HotState, LatestRow
from plantstream.store.partitions import ensure_partitions
from plantstream.store.sensors import SensorKey, SensorRegistry
from plantstream.stream.base import Stream

log = logging.getLogger(__name__)
_DAY_US = 86_400_000_000
_EPOCH_DAY = date(1970, 1, 1)


class BatchHook(Protocol):
    """Runs after a batch committed (detection); must be idempotent and must not raise.

    ``rows`` are the newly stored readings sorted by (sensor, time); ``keys`` maps a sensor
    id to its (facility, device, metric).
    """

    def __call__(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None: ...


@dataclass(slots=True)
class ProcessorConfig:
    stream_name: str
    batch_records: int = 500
    lease_seconds: float = 10.0
    window: TimeWindow = field(default_factory=TimeWindow)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    idle_wait: float = 0.05
    rebalance_every: float = 2.0


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


class Processor:
    """One processor process's worth of work; ``run`` loops until ``stop`` is set."""

    def __init__(
        self,
        *,
        database_url: str,
        stream: Stream,
        redis_client: redis.Redis | None,
        config: ProcessorConfig,
        hooks: Sequence[BatchHook] = (),
        connect: Callable[[str], psycopg.Connection] | None = None,
    ) -> None:
        self.database_url = database_url
        self.stream = stream
        self.hot = HotState(redis_client) if redis_client is not None else None
        self.config = config
        self.hooks = list(hooks)
        self._connect = connect or (lambda url: psycopg.connect(url, autocommit=True))
        self._conn: psycopg.Connection | None = None
        self._prep_conn: psycopg.Connection | None = None  # the prefetch thread's own
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._carry: Future[Prepared] | None = None
        self._leases: LeaseManager | None = None
        self.registry = SensorRegistry()
        self._keys_by_id: dict[int, SensorKey] = {}
        self._known_days: set[int] = set()
        self._redis_behind = True  # catch up from PostgreSQL once at start
        self._last_rebalance = 0.0
        self.processed = 0

    # -- connection management --------------------------------------------------------

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect(self.database_url)
            prepare_connection(self._conn)
            owned = self._leases.owned if self._leases else {}
            self._leases = LeaseManager(
                self._conn,
                stream=self.config.stream_name,
                owner=self.config.owner,
                lease_seconds=self.config.lease_seconds,
            )
            self._leases.owned.update(owned)  # still ours if the tokens stand; renew tells
        return self._conn

    @property
    def leases(self) -> LeaseManager:
        _ = self.conn  # (re)connects and builds the lease manager when needed
        if self._leases is None:
            raise RuntimeError("lease manager missing after connect")
        return self._leases

    @property
    def prep_conn(self) -> psycopg.Connection:
        if self._prep_conn is None or self._prep_conn.closed:
            self._prep_conn = self._connect(self.database_url)
        return self._prep_conn

    def _drop_connection(self) -> None:
        for conn in (self._conn, self._prep_conn):
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
        self._conn = self._prep_conn = None

    def _drop_broken_connections(self) -> None:
        """Close the connections a failure left inside a transaction; keep the idle ones."""
        if not _idle(self._conn):
            self._drop_connection()
        elif self._prep_conn is not None and not _idle(self._prep_conn):
            with contextlib.suppress(psycopg.Error):
                self._prep_conn.close()
            self._prep_conn = None

    # -- the loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set, then commit nothing half-done and release leases."""
        backoff = 0.1
        while not stop.is_set():
            try:
                worked = self.step()
                backoff = 0.1
                if not worked:
                    stop.wait(self.config.idle_wait)
            except psycopg.errors.DiskFull as exc:
                # PostgreSQL itself is fine and the transaction rolled back: keep the
                # connections (a new one would write its temp tables to the full disk)
                metrics.ERRORS.labels("disk_full").inc()
                log.error(
                    "PostgreSQL is out of disk space: %s; nothing of the batch was stored, it "
                    "waits in the stream; retrying in %.1fs",
                    _first_line(exc),
                    backoff,
                )
                self._drop_broken_connections()
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                metrics.ERRORS.labels("postgres").inc()
                log.warning("PostgreSQL unavailable (%s); retrying in %.1fs", exc, backoff)
                self._drop_connection()
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except StreamError as exc:
                metrics.ERRORS.labels("stream").inc()
                log.warning("stream unavailable (%s); retrying in %.1fs", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.shutdown()

    def shutdown(self) -> None:
        try:
            if self._conn is not None and not self._conn.closed:
                self.leases.release_all()
        except psycopg.Error as exc:
            log.warning("could not release leases: %s", exc)
        self._discard(self._carry)
        self._carry = None
        self._prefetcher.shutdown(wait=True)
        self._drop_connection()

    def rebalance(self) -> None:
        shards = self.stream.list_shards()
        self.leases.sync_shards(shards)
        lost = self.leases.renew()
        for shard in lost:
            log.info("lease on %s lost", shard)
        for lease in self.leases.acquire():
            log.info("took lease on %s (token %d)", lease.shard_id, lease.token)
        metrics.OWNED_SHARDS.set(len(self.leases.owned))
        self._last_rebalance = time.monotonic()

    def step(self) -> int:
        """One batch from each owned shard; returns the number of records handled.

        While one shard's batch commits (PostgreSQL works, the GIL is free), the next
        shard's batch is read and decoded on the prefetch thread.
        """
        # renew well inside the lease, or a live processor could briefly look dead
        every = min(self.config.rebalance_every, self.config.lease_seconds / 3)
        if time.monotonic() - self._last_rebalance >= every:
            self.rebalance()
        self._catch_up_redis()
        leases = list(self.leases.owned.values())
        handled = 0
        upcoming = self._carried_over(leases[0]) if leases else None
        for i, lease in enumerate(leases):
            prepared = (
                upcoming.result()
                if upcoming is not None
                else self.prepare(lease.shard_id, lease.checkpoint)
            )
            # the next shard in turn (wrapping round: the first one's checkpoint has moved)
            upcoming = self._prefetch(leases[(i + 1) % len(leases)])
            try:
                handled += self._apply(lease, prepared)
            except BaseException:
                self._discard(upcoming)
                raise
        self._carry = upcoming
        return handled

    def _carried_over(self, lease: Lease) -> Future[Prepared] | None:
        """The batch prefetched at the end of the last step, if it still fits this lease."""
        carry, self._carry = self._carry, None
        if carry is None:
            return None
        try:
            prepared = carry.result()
        except Exception:  # read again below; a real fault will recur there
            return None
        if prepared.shard_id != lease.shard_id or prepared.after != lease.checkpoint:
            return None
        return carry

    @staticmethod
    def _discard(future: Future[Prepared] | None) -> None:
        if future is not None and not future.cancel():
            with contextlib.suppress(Exception):
                future.result()

    def _prefetch(self, lease: Lease) -> Future[Prepared]:
        return self._prefetcher.submit(self.prepare, lease.shard_id, lease.checkpoint)

    def prepare(self, shard_id: str, after: str | None) -> Prepared:
        """Read and decode the next batch of a shard; resolve its sensors and partitions."""
        result = self.stream.read(shard_id, after, self.config.batch_records)
        if result.behind_ms is not None:
            metrics.SHARD_LAG_MS.labels(shard_id).set(result.behind_ms)
        checkpoint = result.records[-1].sequence if result.records else after
        decoded = decode_records(result.records, shard_id=shard_id, window=self.config.window)
        rows, facilities = self._columns(decoded)
        if len(rows):
            self._ensure_days(set(np.unique(rows.ts_us // _DAY_US).tolist()))
        batch = RowBatch(rows, facilities, decoded.dead_letters, decoded.counters)
        return Prepared(
            shard_id,
            after,
            checkpoint,
            result.end_of_shard,
            len(result.records),
            batch,
            copy_ready(rows),
        )

    def _apply(self, lease: Lease, prepared: Prepared) -> int:
        if not prepared.record_count and not prepared.end_of_shard:
            return 0
        started = time.perf_counter()
        try:
            stored = self.commit(lease, prepared)
        except LeaseLostError:
            log.info("lease on %s lost before commit; batch left for the new owner", lease.shard_id)
            self.leases.forget(lease.shard_id)
            return 0
        lease.checkpoint = prepared.checkpoint
        if prepared.end_of_shard:
            log.info("shard %s finished", lease.shard_id)
            self.leases.forget(lease.shard_id)
            self._last_rebalance = 0.0  # its children may start now
        self._after_commit(stored)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        self.processed += len(stored)
        return max(1, prepared.record_count)

    def commit(self, lease: Lease, prepared: Prepared) -> Columns:
        """Commit a prepared batch under ``lease``; raises ``LeaseLostError`` if fenced out."""
        if prepared.after != lease.checkpoint or prepared.shard_id != lease.shard_id:
            raise LeaseLostError("the batch was not read from this lease's checkpoint")
        stored, counters = commit_batch(
            self.conn,
            prepared.batch,
            stream=self.config.stream_name,
            shard_id=lease.shard_id,
            owner=self.config.owner,
            token=lease.token,
            previous=lease.checkpoint,
            checkpoint=prepared.checkpoint or "",
            finished=prepared.end_of_shard,
            lease_seconds=self.config.lease_seconds,
            ready=prepared.ready,
        )
        for (facility, counter), value in counters.items():
            metrics.READINGS.labels(facility, counter).inc(value)
        return stored

    def _columns(self, decoded: Decoded) -> tuple[Columns, list[str]]:
        """The decoded records as one set of columns, with sensor ids resolved."""
        if not decoded.records:
            return Columns.empty(), []
        used = [
            [rec.metrics[i] for i in np.unique(rec.metric_idx).tolist()] for rec in decoded.records
        ]
        keys = {
            (rec.facility, rec.device, metric)
            for rec, metric_names in zip(decoded.records, used, strict=True)
            for metric in metric_names
        }
        ids = self.registry.resolve(self.prep_conn, keys)
        for key, sensor_id in ids.items():
            self._keys_by_id[sensor_id] = key
        facilities: dict[str, int] = {}
        sensor_parts, facility_parts = [], []
        for rec in decoded.records:
            table = np.array(
                [ids.get((rec.facility, rec.device, m), -1) for m in rec.metrics], dtype=np.int32
            )
            sensor_parts.append(table[rec.metric_idx])
            code = facilities.setdefault(rec.facility, len(facilities))
            facility_parts.append(np.full(len(rec), code, dtype=np.int32))
        rows = Columns(
            np.concatenate(sensor_parts),
            np.concatenate([rec.ts_us for rec in decoded.records]),
            np.concatenate([rec.values for rec in decoded.records]),
            np.concatenate([rec.quality for rec in decoded.records]).astype(np.int16),
            np.concatenate(facility_parts),
            np.concatenate(
                [np.full(len(rec), rec.received_us, dtype=np.int64) for rec in decoded.records]
            ),
        )
        return rows, list(facilities)

    def _ensure_days(self, days: set[int]) -> None:
        missing = days - self._known_days
        if missing:
            ensure_partitions(self.prep_conn, [_EPOCH_DAY + timedelta(days=d) for d in missing])
            self._known_days |= missing

    def _after_commit(self, stored: Columns) -> None:
        if not len(stored):
            return
        if self.hot is not None and not self._redis_behind:
            # rows are sorted by (sensor, time): each sensor's newest is its last row
            last = np.flatnonzero(np.append(stored.sensor_id[1:] != stored.sensor_id[:-1], True))
            keys = self._keys_by_id
            newest: list[LatestRow] = [
                (*keys[s], t, v, q)
                for s, t, v, q in zip(
                    stored.sensor_id[last].tolist(),
                    stored.ts_us[last].tolist(),
                    stored.value[last].tolist(),
                    stored.quality[last].tolist(),
                    strict=True,
                )
            ]
            try:
                self.hot.update_latest(newest)
            except redis.RedisError as exc:
                metrics.ERRORS.labels("redis").inc()
                log.warning("Redis update failed (%s); will catch up from PostgreSQL", exc)
                self._redis_behind = True
        for hook in self.hooks:
            try:
                hook(stored, self._keys_by_id)
            except Exception:  # a detector bug must never stop the data
                metrics.ERRORS.labels("hook").inc()
                log.exception("batch hook failed")

    def _catch_up_redis(self) -> None:
        metrics.REDIS_BEHIND.set(1 if self._redis_behind else 0)
        if not self._redis_behind or self.hot is None:
            return
        try:
            self.hot.client.ping()
            self.hot.rebuild_latest(self.conn)
        except redis.RedisError:
            return
        log.info("Redis caught up from PostgreSQL")
        self._redis_behind = False
        metrics.REDIS_BEHIND.set(0)


def _idle(conn: psycopg.Connection | None) -> bool:
    """No connection, or one outside any transaction (safe to keep using)."""
    if conn is None or conn.closed:
        return True
    return conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def _first_line(exc: BaseException) -> str:
    """PostgreSQL's message without its HINT/CONTEXT lines: one log line per retry."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
