"""The lease and checkpoint lifecycle of one processor's shards, with KCL's events: initialize,
lease lost, shard ended, shutdown (the SQL is ``store/leases.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import psycopg

from plantstream.store import leases as sql
from plantstream.store.leases import CheckpointClaim, LeaseRow
from plantstream.stream.base import ShardInfo

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Lease:
    """A shard this process owns, with the fencing token and the checkpoint it holds."""

    shard_id: str
    token: int
    checkpoint: str | None


class ShardListener(Protocol):
    """Told about every change of a shard's life in this process (KCL ``ShardRecordProcessor``)."""

    def initialize(self, lease: Lease) -> None:
        """The lease was taken; records follow from ``lease.checkpoint``."""

    def lease_lost(self, shard_id: str) -> None:
        """Another processor owns the shard now; nothing more of it may be committed here."""

    def shard_ended(self, shard_id: str) -> None:
        """A closed shard was read and committed to its end; its children may start."""

    def shutdown(self) -> None:
        """The processor stops; its leases were given back."""


class ShardLifecycle:
    """Takes, renews, checkpoints and releases the leases of one processor (``owner``).

    Any number of processors share a stream's shards, one owner each. A lease carries a
    fencing token that grows on every change of owner; a commit claims the checkpoint only
    while its token stands (``claim``), so a processor that lost a lease can no longer write.
    """

    def __init__(
        self,
        *,
        stream: str,
        owner: str,
        lease_seconds: float,
        listeners: Sequence[ShardListener] = (),
    ) -> None:
        self.stream = stream
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.listeners = list(listeners)
        self.owned: dict[str, Lease] = {}

    # -- events -------------------------------------------------------------------------

    def rebalance(self, conn: psycopg.Connection, shards: Sequence[ShardInfo]) -> None:
        """Record new shards, renew what is ours (``lease_lost`` for the rest), take more."""
        sql.register_shards(conn, stream=self.stream, shards=shards)
        for shard_id in self._renew(conn):
            self.lost(shard_id)
        for lease in self._acquire(conn):
            log.info("took lease on %s (token %d)", lease.shard_id, lease.token)
            for listener in self.listeners:
                listener.initialize(lease)

    def claim(self, lease: Lease, checkpoint: str | None, *, finished: bool) -> CheckpointClaim:
        """The fenced checkpoint a commit of ``lease``'s next batch writes."""
        return CheckpointClaim(
            stream=self.stream,
            shard_id=lease.shard_id,
            owner=self.owner,
            token=lease.token,
            previous=lease.checkpoint,
            checkpoint=checkpoint or "",
            finished=finished,
            lease_seconds=self.lease_seconds,
        )

    def committed(self, lease: Lease, checkpoint: str | None, *, finished: bool) -> None:
        """A commit of ``lease`` went through: its checkpoint moved (and the shard may be done)."""
        lease.checkpoint = checkpoint
        if finished:
            log.info("shard %s finished", lease.shard_id)
            self.owned.pop(lease.shard_id, None)
            for listener in self.listeners:
                listener.shard_ended(lease.shard_id)

    def lost(self, shard_id: str) -> None:
        """The lease is gone (not renewed, or fenced out at commit)."""
        log.info("lease on %s lost", shard_id)
        self.owned.pop(shard_id, None)
        for listener in self.listeners:
            listener.lease_lost(shard_id)

    def shutdown(self, conn: psycopg.Connection | None) -> None:
        """Give every lease back at once (when PostgreSQL answers), so another processor can
        take over without waiting for expiry; then tell the listeners."""
        if conn is not None and self.owned:
            try:
                with conn.transaction():
                    sql.release_leases(
                        conn, stream=self.stream, owner=self.owner, shard_ids=list(self.owned)
                    )
            except psycopg.Error as exc:  # they expire within lease_seconds instead
                log.warning("could not release leases: %s", exc)
        self.owned.clear()
        for listener in self.listeners:
            listener.shutdown()

    # -- lease bookkeeping ------------------------------------------------------------

    def _renew(self, conn: psycopg.Connection) -> list[str]:
        """Extend every lease still ours; return the shards we lost."""
        if not self.owned:
            return []
        with conn.transaction():
            kept = sql.renew_leases(
                conn,
                stream=self.stream,
                owner=self.owner,
                tokens={shard: lease.token for shard, lease in self.owned.items()},
                lease_seconds=self.lease_seconds,
            )
        return [shard for shard in self.owned if shard not in kept]

    def _acquire(self, conn: psycopg.Connection) -> list[Lease]:
        """Take free or expired leases up to this process's fair share; return the new ones."""
        with conn.transaction():
            rows = sql.startable_shards(conn, stream=self.stream)
            owners = {row.owner for row in rows if row.held} | {self.owner}
            share = math.ceil(len(rows) / len(owners)) if rows else 0
            free = sorted(row.shard_id for row in rows if not row.held)
            wanted = max(0, share - len(self.owned))
            taken = [lease for shard_id in free[:wanted] if (lease := self._take(conn, shard_id))]
            if len(self.owned) < share - 1 or (len(self.owned) < share and not free):
                stolen = self._steal_one(conn, rows, share)
                if stolen is not None:
                    taken.append(stolen)
        return taken

    def _steal_one(
        self, conn: psycopg.Connection, rows: list[LeaseRow], share: int
    ) -> Lease | None:
        """Take one shard from the busiest owner holding more than its share (as KCL does)."""
        held: dict[str, list[str]] = {}
        for row in rows:
            if row.held and row.owner is not None and row.owner != self.owner:
                held.setdefault(row.owner, []).append(row.shard_id)
        if not held:
            return None
        victim, shards = max(held.items(), key=lambda item: (len(item[1]), item[0]))
        if len(shards) <= share:
            return None
        return self._take(conn, sorted(shards)[-1], victim=victim)

    def _take(
        self, conn: psycopg.Connection, shard_id: str, victim: str | None = None
    ) -> Lease | None:
        got = sql.take_lease(
            conn,
            stream=self.stream,
            shard_id=shard_id,
            owner=self.owner,
            lease_seconds=self.lease_seconds,
            victim=victim,
        )
        if got is None:
            return None
        lease = self.owned[shard_id] = Lease(shard_id, *got)
        return lease
