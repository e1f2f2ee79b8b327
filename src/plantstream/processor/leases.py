"""Shard leases in PostgreSQL: any number of processors share the shards, one owner each.

A lease row holds the owner, a fencing token that grows on every change of owner, an expiry
and the shard's checkpoint. A processor commits a batch only while its token still stands
(see ``writer.commit_batch``), so one that lost its lease can no longer write.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from plantstream.stream.base import ShardInfo


@dataclass(slots=True)
class Lease:
    """A shard this process owns, with the fencing token and the checkpoint it holds."""

    shard_id: str
    token: int
    checkpoint: str | None


class LeaseManager:
    """Takes, renews and releases shard leases for one processor (``owner``)."""

    def __init__(
        self, conn: psycopg.Connection, *, stream: str, owner: str, lease_seconds: float
    ) -> None:
        self.conn = conn
        self.stream = stream
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.owned: dict[str, Lease] = {}

    def sync_shards(self, shards: Sequence[ShardInfo]) -> None:
        """Record shards the stream has that the lease table does not know yet."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO shard_leases (stream, shard_id, parent_ids) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                [(self.stream, s.shard_id, list(s.parent_ids)) for s in shards],
            )

    def renew(self) -> list[str]:
        """Extend every lease still ours; return the shards we lost."""
        if not self.owned:
            return []
        with self.conn.transaction():
            rows = self.conn.execute(
                "UPDATE shard_leases SET expires_at = now() + make_interval(secs => %s) "
                "WHERE stream = %s AND owner = %s "
                "AND (shard_id, token) IN (SELECT * FROM unnest(%s::text[], %s::bigint[])) "
                "RETURNING shard_id",
                (
                    self.lease_seconds,
                    self.stream,
                    self.owner,
                    list(self.owned),
                    [lease.token for lease in self.owned.values()],
                ),
            ).fetchall()
        kept = {row[0] for row in rows}
        lost = [shard for shard in self.owned if shard not in kept]
        for shard in lost:
            del self.owned[shard]
        return lost

    def acquire(self) -> list[Lease]:
        """Take free or expired leases up to this process's fair share; return the new ones.

        A shard is eligible only when all its parents are finished (Kinesis resharding: a
        device's older records, in the parent, are applied before its newer ones).
        """
        with self.conn.transaction():
            rows = self.conn.execute(
                """
                SELECT l.shard_id, l.owner IS NOT NULL AND l.expires_at > now() AS held,
                       l.owner
                FROM shard_leases l
                WHERE l.stream = %s AND NOT l.finished
                  AND NOT EXISTS (
                      SELECT 1 FROM shard_leases p
                      WHERE p.stream = l.stream AND p.shard_id = ANY (l.parent_ids)
                        AND NOT p.finished)
                """,
                (self.stream,),
            ).fetchall()
            owners = {owner for _, held, owner in rows if held} | {self.owner}
            share = math.ceil(len(rows) / len(owners)) if rows else 0
            free = sorted(shard for shard, held, _ in rows if not held)
            wanted = max(0, share - len(self.owned))
            taken: list[Lease] = []
            for shard_id in free[:wanted]:
                row = self.conn.execute(
                    "UPDATE shard_leases SET owner = %s, token = token + 1, "
                    "expires_at = now() + make_interval(secs => %s), updated_at = now() "
                    "WHERE stream = %s AND shard_id = %s "
                    "AND (owner IS NULL OR expires_at <= now()) AND NOT finished "
                    "RETURNING token, checkpoint",
                    (self.owner, self.lease_seconds, self.stream, shard_id),
                ).fetchone()
                if row is not None:
                    lease = Lease(shard_id, row[0], row[1])
                    self.owned[shard_id] = lease
                    taken.append(lease)
            if len(self.owned) < share - 1 or (len(self.owned) < share and not free):
                stolen = self._steal_one(rows, share)
                if stolen is not None:
                    taken.append(stolen)
        return taken

    def _steal_one(self, rows: list[tuple[str, bool, str | None]], share: int) -> Lease | None:
        """Take one shard from the busiest owner holding more than its share (as KCL does).

        Bumping the token fences the old owner: its next commit fails and it lets go.
        """
        held: dict[str, list[str]] = {}
        for shard_id, is_held, owner in rows:
            if is_held and owner is not None and owner != self.owner:
                held.setdefault(owner, []).append(shard_id)
        if not held:
            return None
        victim, shards = max(held.items(), key=lambda item: (len(item[1]), item[0]))
        if len(shards) <= share:
            return None
        shard_id = sorted(shards)[-1]
        row = self.conn.execute(
            "UPDATE shard_leases SET owner = %s, token = token + 1, "
            "expires_at = now() + make_interval(secs => %s), updated_at = now() "
            "WHERE stream = %s AND shard_id = %s AND owner = %s AND NOT finished "
            "RETURNING token, checkpoint",
            (self.owner, self.lease_seconds, self.stream, shard_id, victim),
        ).fetchone()
        if row is None:
            return None
        lease = Lease(shard_id, row[0], row[1])
        self.owned[shard_id] = lease
        return lease

    def release_all(self) -> None:
        """Give every lease back at once so another processor can take over without waiting."""
        if not self.owned:
            return
        with self.conn.transaction():
            self.conn.execute(
                "UPDATE shard_leases SET owner = NULL, expires_at = NULL, updated_at = now() "
                "WHERE stream = %s AND owner = %s AND shard_id = ANY (%s)",
                (self.stream, self.owner, list(self.owned)),
            )
        self.owned.clear()

    def forget(self, shard_id: str) -> None:
        self.owned.pop(shard_id, None)
