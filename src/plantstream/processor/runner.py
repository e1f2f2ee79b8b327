"""The processor loop: own shards through leases, read, validate, commit, then feed the sinks
(the store commit is exactly-once; the sinks follow it and are idempotent, so replays are safe).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg

from plantstream.errors import LeaseLostError, StreamError
from plantstream.ingest.metrics import facility_label
from plantstream.model import DEFAULT_CATALOG, SignalCatalog, TimeWindow
from plantstream.processor import metrics
from plantstream.processor.backoff import ShardBackoff
from plantstream.processor.commit import Committed, commit_batch
from plantstream.processor.connections import Conninfo, processor_pool
from plantstream.processor.lifecycle import Lease, ShardLifecycle
from plantstream.processor.prepare import BatchPreparer, Prepared
from plantstream.processor.repair import RollupRepairer
from plantstream.processor.rows import Columns
from plantstream.processor.sinks import PostCommitSink, SinkManager
from plantstream.processor.trim import StreamTrimmer, TrimmableStream
from plantstream.stream.base import Stream

log = logging.getLogger(__name__)
_RELEASE_TIMEOUT_S = 2.0


@dataclass(slots=True)
class ProcessorConfig:
    """How one processor works: its stream, batch size, lease length and lease owner name."""

    stream_name: str
    batch_records: int = 500
    lease_seconds: float = 10.0
    window: TimeWindow = field(default_factory=TimeWindow)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    # an empty stream is looked at again after idle_wait_first s, then twice as long each
    # time it stays empty, up to idle_wait: a reading that arrives while readings flow is
    # picked up within a few ms, and an idle processor still asks only 1/idle_wait times a s
    idle_wait: float = 0.05
    idle_wait_first: float = 0.005
    rebalance_every: float = 2.0
    max_sensors_per_facility: int | None = None  # the sensor quota (None: unbounded)
    # trim a shard's committed entries from the stream at most this often (None: never)
    trim_every: float | None = None
    # the signal definitions readings are validated and typed against (issue 12)
    catalog: SignalCatalog = DEFAULT_CATALOG
    # repair rollup buckets late data made dirty (processor/repair.py): on every idle step;
    # while busy at most every repair_every s and repair_share of the time; a pass takes at
    # most repair_limit buckets per width and repair_max_rows raw readings
    repair_every: float = 1.0
    repair_limit: int = 500
    repair_max_rows: int = 200_000
    repair_share: float = 0.1


class IdleWaits:
    """How long the loop waits after a step: not at all after work; after an empty step
    ``first`` s, then twice as long after each further empty one, up to ``longest``."""

    def __init__(self, *, first: float, longest: float) -> None:
        self.longest = max(0.0, longest)
        self.first = min(max(0.0, first), self.longest)  # a short longest wins
        self._next = self.first

    def after(self, *, worked: bool) -> float:
        if worked:
            self._next = self.first
            return 0.0
        wait = self._next
        self._next = min(max(wait * 2, self.first), self.longest)
        return wait


class Processor:
    """One processor process's worth of work; ``run`` loops until ``stop`` is set.

    ``database_url`` is a conninfo string or a callable returning one (asked again for every
    new connection: rotated credentials, a moved server). ``sinks`` run after every commit in
    the order given; ``register`` adds more before ``run``.
    """

    def __init__(
        self,
        *,
        database_url: Conninfo,
        stream: Stream,
        config: ProcessorConfig,
        sinks: Sequence[PostCommitSink] = (),
    ) -> None:
        self.stream = stream
        self.config = config
        self.pool = processor_pool(database_url, name=f"processor-{config.owner}")
        self.sinks = SinkManager()
        for sink in sinks:
            self.register(sink)
        self.backoff = ShardBackoff()
        self.leases = ShardLifecycle(
            stream=config.stream_name,
            owner=config.owner,
            lease_seconds=config.lease_seconds,
            listeners=[_ShardEvents(self)],
        )
        self.preparer = BatchPreparer(
            stream=stream,
            pool=self.pool,
            window=config.window,
            limit=config.batch_records,
            max_sensors_per_facility=config.max_sensors_per_facility,
            catalog=config.catalog,
        )
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._carry: Future[Prepared] | None = None
        self._last_rebalance = 0.0
        self.processed = 0
        self.repairer = RollupRepairer(
            every_s=config.repair_every,
            limit=config.repair_limit,
            max_rows=config.repair_max_rows,
            share=config.repair_share,
        )
        self.trimmer = (
            StreamTrimmer(stream, every_s=config.trim_every)
            if config.trim_every is not None and isinstance(stream, TrimmableStream)
            else None
        )

    def register(self, sink: PostCommitSink) -> None:
        """Feed ``sink`` every committed batch from now on (it catches up first)."""
        self.sinks.register(sink)

    # -- the loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set, then commit nothing half-done and release leases."""
        backoff = 0.1
        idle = IdleWaits(first=self.config.idle_wait_first, longest=self.config.idle_wait)
        while not stop.is_set():
            try:
                worked = self.step()
                backoff = 0.1
                wait = idle.after(worked=bool(worked))
                if wait:
                    stop.wait(wait)
                continue
            except psycopg.errors.DiskFull as exc:
                # PostgreSQL itself is fine and the transaction rolled back: the pool keeps
                # the connections (a new one would write its temp tables to the full disk)
                metrics.ERRORS.labels("disk_full").inc()
                log.error(
                    "PostgreSQL is out of disk space: %s; nothing of the batch was stored, it "
                    "waits in the stream; retrying in %.1fs",
                    _first_line(exc),
                    backoff,
                )
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                # broken connections went back to the pool, which replaces them
                metrics.ERRORS.labels("postgres").inc()
                log.warning("PostgreSQL unavailable (%s); retrying in %.1fs", exc, backoff)
            except StreamError as exc:
                metrics.ERRORS.labels("stream").inc()
                log.warning("stream unavailable (%s); retrying in %.1fs", exc, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)
        self.shutdown()

    def shutdown(self) -> None:
        """Drop the prefetched batch, close the sinks (a process sink drains and stops its
        child), give the leases back, close the connections (idempotent)."""
        self._discard(self._carry)
        self._carry = None
        self._prefetcher.shutdown(wait=True)
        self.sinks.close()
        if self.pool.closed:
            return
        try:
            with self.pool.connection(timeout=_RELEASE_TIMEOUT_S) as conn:
                self.leases.shutdown(conn)
        except psycopg.Error as exc:  # no connection: the leases simply expire
            log.warning("could not release leases: %s", exc)
            self.leases.shutdown(None)
        self.pool.close()

    def rebalance(self) -> None:
        with self.pool.connection() as conn:
            self._rebalance(conn)

    def _rebalance(self, conn: psycopg.Connection) -> None:
        self.leases.rebalance(conn, self.stream.list_shards())
        metrics.OWNED_SHARDS.set(len(self.leases.owned))
        self._last_rebalance = time.monotonic()

    def step(self) -> int:
        """One batch from each owned shard not backing off, then a rollup repair pass when
        due; returns the records handled plus the buckets repaired (0: nothing to do).

        While one shard's batch commits (PostgreSQL works, the GIL is free), the next
        shard's batch is read and decoded on the prefetch thread.
        """
        with self.pool.connection() as conn:
            # renew well inside the lease, or a live processor could briefly look dead
            every = min(self.config.rebalance_every, self.config.lease_seconds / 3)
            if time.monotonic() - self._last_rebalance >= every:
                self._rebalance(conn)
            self.sinks.catch_up(conn)
            leases = [ls for ls in self.leases.owned.values() if self.backoff.ready(ls.shard_id)]
            handled = 0
            upcoming = self._carried_over(leases[0]) if leases else None
            for i, lease in enumerate(leases):
                if upcoming is not None:
                    prepared = upcoming.result()
                elif self.backoff.ready(lease.shard_id):
                    prepared = self.prepare(lease.shard_id, lease.checkpoint)
                else:
                    continue  # pushed back earlier in this very step
                # the next shard in turn (wrapping round: the first one's checkpoint has moved)
                following = leases[(i + 1) % len(leases)]
                ahead = following is not lease and self.backoff.ready(following.shard_id)
                upcoming = self._prefetch(following) if ahead else None
                try:
                    handled += self._apply(conn, lease, prepared)
                except BaseException:
                    self._discard(upcoming)
                    raise
            self._carry = upcoming
            handled += self.repairer.repair_due(conn, idle=not handled)
        if self.trimmer is not None:
            self.trimmer.trim_due()
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
        return self.preparer.prepare(shard_id, after)

    def _apply(self, conn: psycopg.Connection, lease: Lease, prepared: Prepared) -> int:
        if prepared.retry_after is not None:
            self.backoff.defer(lease.shard_id, prepared.retry_after)
        if not prepared.record_count and not prepared.end_of_shard:
            return 0
        started = time.perf_counter()
        try:
            committed = self._commit(conn, lease, prepared)
        except LeaseLostError:
            log.info("lease on %s lost before commit; batch left for the new owner", lease.shard_id)
            self.leases.lost(lease.shard_id)
            return 0
        self.leases.committed(lease, prepared.checkpoint, finished=prepared.end_of_shard)
        if self.trimmer is not None:
            self.trimmer.committed(lease.shard_id, prepared.checkpoint)
        self.sinks.committed(committed.stored, self.preparer.keys_by_id)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        self.processed += len(committed.stored)
        return max(1, prepared.record_count)

    def commit(self, lease: Lease, prepared: Prepared) -> Columns:
        """Commit a prepared batch under ``lease``; raises ``LeaseLostError`` if fenced out."""
        with self.pool.connection() as conn:
            return self._commit(conn, lease, prepared).stored

    def _commit(self, conn: psycopg.Connection, lease: Lease, prepared: Prepared) -> Committed:
        if prepared.after != lease.checkpoint or prepared.shard_id != lease.shard_id:
            raise LeaseLostError("the batch was not read from this lease's checkpoint")
        claim = self.leases.claim(lease, prepared.checkpoint, finished=prepared.end_of_shard)
        committed = commit_batch(conn, prepared.batch, claim, prepared.ready)
        for (facility, counter), value in committed.counters.items():
            metrics.READINGS.labels(facility_label(facility), counter).inc(value)
        return committed


class _ShardEvents:
    """The processor's own reactions to its shards' lifecycle."""

    def __init__(self, processor: Processor) -> None:
        self._processor = processor

    def initialize(self, lease: Lease) -> None:
        self._processor.backoff.forget(lease.shard_id)

    def lease_lost(self, shard_id: str) -> None:
        self._processor.backoff.forget(shard_id)

    def shard_ended(self, shard_id: str) -> None:
        self._processor.backoff.forget(shard_id)
        self._processor._last_rebalance = 0.0  # its children may start now

    def shutdown(self) -> None:
        self._processor.backoff.clear()


def _first_line(exc: BaseException) -> str:
    """PostgreSQL's message without its HINT/CONTEXT lines: one log line per retry."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
