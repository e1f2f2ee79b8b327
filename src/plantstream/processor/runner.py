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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Protocol

import psycopg
import redis

from plantstream.errors import LeaseLostError, StreamError
from plantstream.model import TimeWindow
from plantstream.processor import metrics
from plantstream.processor.decode import decode_records
from plantstream.processor.leases import Lease, LeaseManager
from plantstream.processor.writer import StoredRows, commit_batch, prepare_connection
from plantstream.store.hot import HotState, LatestRow
from plantstream.store.partitions import ensure_partitions
from plantstream.store.sensors import SensorKey, SensorRegistry
from plantstream.stream.base import Stream, StreamRecord

log = logging.getLogger(__name__)
_DAY_US = 86_400_000_000
_EPOCH_DAY = date(1970, 1, 1)


class BatchHook(Protocol):
    """Runs after a batch committed (detection); must be idempotent and must not raise."""

    def __call__(self, rows: Sequence[LatestRow]) -> None: ...


@dataclass(slots=True)
class ProcessorConfig:
    stream_name: str
    batch_records: int = 500
    lease_seconds: float = 10.0
    window: TimeWindow = field(default_factory=TimeWindow)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    idle_wait: float = 0.05
    rebalance_every: float = 2.0


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

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

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
        """One pass over the owned shards; returns the number of records handled."""
        if time.monotonic() - self._last_rebalance >= self.config.rebalance_every:
            self.rebalance()
        self._catch_up_redis()
        handled = 0
        for lease in list(self.leases.owned.values()):
            handled += self.process_shard(lease)
        return handled

    def process_shard(self, lease: Lease) -> int:
        result = self.stream.read(lease.shard_id, lease.checkpoint, self.config.batch_records)
        if result.behind_ms is not None:
            metrics.SHARD_LAG_MS.labels(lease.shard_id).set(result.behind_ms)
        if not result.records and not result.end_of_shard:
            return 0
        started = time.perf_counter()
        checkpoint = result.records[-1].sequence if result.records else lease.checkpoint
        try:
            stored = self._commit(lease, result.records, checkpoint, result.end_of_shard)
        except LeaseLostError:
            log.info("lease on %s lost before commit; batch left for the new owner", lease.shard_id)
            self.leases.forget(lease.shard_id)
            return 0
        lease.checkpoint = checkpoint
        if result.end_of_shard:
            log.info("shard %s finished", lease.shard_id)
            self.leases.forget(lease.shard_id)
            self._last_rebalance = 0.0  # its children may start now
        self._after_commit(stored)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        self.processed += len(stored.sensor_ids)
        return max(1, len(result.records))

    def _commit(
        self, lease: Lease, records: list[StreamRecord], checkpoint: str | None, finished: bool
    ) -> StoredRows:
        valid, batch = decode_records(records, shard_id=lease.shard_id, window=self.config.window)
        ids = self.registry.resolve(self.conn, {(f, r.device, r.metric) for f, r, _ in valid})
        self._ensure_days({r.ts_us // _DAY_US for _, r, _ in valid})
        for facility, reading, late in valid:
            key = (facility, reading.device, reading.metric)
            sensor_id = ids[key]
            self._keys_by_id[sensor_id] = key
            batch.sensor_ids.append(sensor_id)
            batch.ts_us.append(reading.ts_us)
            batch.values.append(reading.value)
            batch.qualities.append(reading.quality)
            batch.facilities.append(facility)
            batch.late.append(late)
        stored = commit_batch(
            self.conn,
            batch,
            stream=self.config.stream_name,
            shard_id=lease.shard_id,
            owner=self.config.owner,
            token=lease.token,
            previous=lease.checkpoint,
            checkpoint=checkpoint or "",
            finished=finished,
            lease_seconds=self.config.lease_seconds,
        )
        for (facility, counter), value in stored.counters.items():
            metrics.READINGS.labels(facility, counter).inc(value)
        return stored

    def _ensure_days(self, days: set[int]) -> None:
        missing = days - self._known_days
        if missing:
            ensure_partitions(self.conn, [_EPOCH_DAY + timedelta(days=d) for d in missing])
            self._known_days |= missing

    def _after_commit(self, stored: StoredRows) -> None:
        if not stored.sensor_ids:
            return
        keys = self._keys_by_id
        rows: list[LatestRow] = [
            (*keys[s], t, v, q)
            for s, t, v, q in zip(
                stored.sensor_ids, stored.ts_us, stored.values, stored.qualities, strict=True
            )
        ]
        if self.hot is not None and not self._redis_behind:
            try:
                self.hot.update_latest(rows)
            except redis.RedisError as exc:
                metrics.ERRORS.labels("redis").inc()
                log.warning("Redis update failed (%s); will catch up from PostgreSQL", exc)
                self._redis_behind = True
        for hook in self.hooks:
            try:
                hook(rows)
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
