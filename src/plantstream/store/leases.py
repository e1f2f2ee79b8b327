"""SQL of ``shard_leases``: one row per shard holds its lease (owner, fencing token, expiry)
and its checkpoint, so a commit can check the token and move the checkpoint in one statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import psycopg

from plantstream.errors import LeaseLostError


class ShardLineage(Protocol):
    """What the lease table records of a shard (``stream.base.ShardInfo`` has it): the store
    layer sits beside the stream layer and does not import it."""

    @property
    def shard_id(self) -> str: ...

    @property
    def parent_ids(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A shard a processor may take: is it held (unexpired) and by whom."""

    shard_id: str
    held: bool
    owner: str | None


@dataclass(frozen=True, slots=True)
class CheckpointClaim:
    """Everything the fenced checkpoint update of one commit needs (KCL's
    ``setCheckpoint(shard, sequence, concurrencyToken)``)."""

    stream: str
    shard_id: str
    owner: str
    token: int
    previous: str | None  # the checkpoint the batch was read after
    checkpoint: str
    finished: bool
    lease_seconds: float


def register_shards(
    conn: psycopg.Connection, *, stream: str, shards: Sequence[ShardLineage]
) -> None:
    """Record shards the lease table does not know yet (with their parents)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO shard_leases (stream, shard_id, parent_ids) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [(stream, s.shard_id, list(s.parent_ids)) for s in shards],
        )


def renew_leases(
    conn: psycopg.Connection,
    *,
    stream: str,
    owner: str,
    tokens: Mapping[str, int],
    lease_seconds: float,
) -> set[str]:
    """Extend the leases whose (shard, token) still stand; return the shards renewed."""
    rows = conn.execute(
        "UPDATE shard_leases SET expires_at = now() + make_interval(secs => %s) "
        "WHERE stream = %s AND owner = %s "
        "AND (shard_id, token) IN (SELECT * FROM unnest(%s::text[], %s::bigint[])) "
        "RETURNING shard_id",
        (lease_seconds, stream, owner, list(tokens), list(tokens.values())),
    ).fetchall()
    return {row[0] for row in rows}


def startable_shards(conn: psycopg.Connection, *, stream: str) -> list[LeaseRow]:
    """Unfinished shards whose parents are all finished (Kinesis resharding order)."""
    rows = conn.execute(
        """
        SELECT l.shard_id, l.owner IS NOT NULL AND l.expires_at > now() AS held, l.owner
        FROM shard_leases l
        WHERE l.stream = %s AND NOT l.finished
          AND NOT EXISTS (
              SELECT 1 FROM shard_leases p
              WHERE p.stream = l.stream AND p.shard_id = ANY (l.parent_ids) AND NOT p.finished)
        """,
        (stream,),
    ).fetchall()
    return [LeaseRow(shard_id, held, holder) for shard_id, held, holder in rows]


def take_lease(
    conn: psycopg.Connection,
    *,
    stream: str,
    shard_id: str,
    owner: str,
    lease_seconds: float,
    victim: str | None = None,
) -> tuple[int, str | None] | None:
    """Take a free or expired lease (or, with ``victim``, steal it from that owner).

    Returns the new fencing token and the shard's checkpoint, or None if someone was faster.
    Bumping the token fences the previous owner: its next commit fails.
    """
    if victim is None:
        row = conn.execute(
            "UPDATE shard_leases SET owner = %s, token = token + 1, "
            "expires_at = now() + make_interval(secs => %s), updated_at = now() "
            "WHERE stream = %s AND shard_id = %s "
            "AND (owner IS NULL OR expires_at <= now()) AND NOT finished "
            "RETURNING token, checkpoint",
            (owner, lease_seconds, stream, shard_id),
        ).fetchone()
    else:
        row = conn.execute(
            "UPDATE shard_leases SET owner = %s, token = token + 1, "
            "expires_at = now() + make_interval(secs => %s), updated_at = now() "
            "WHERE stream = %s AND shard_id = %s AND owner = %s AND NOT finished "
            "RETURNING token, checkpoint",
            (owner, lease_seconds, stream, shard_id, victim),
        ).fetchone()
    return (row[0], row[1]) if row is not None else None


def release_leases(
    conn: psycopg.Connection, *, stream: str, owner: str, shard_ids: Sequence[str]
) -> None:
    """Give leases back at once, so another processor can take over without waiting."""
    conn.execute(
        "UPDATE shard_leases SET owner = NULL, expires_at = NULL, updated_at = now() "
        "WHERE stream = %s AND owner = %s AND shard_id = ANY (%s)",
        (stream, owner, list(shard_ids)),
    )


def committed_checkpoints(
    conn: psycopg.Connection, *, stream: str
) -> dict[str, tuple[str | None, bool]]:
    """Each known shard's committed checkpoint and whether it is finished."""
    rows = conn.execute(
        "SELECT shard_id, checkpoint, finished FROM shard_leases WHERE stream = %s", (stream,)
    ).fetchall()
    return {shard_id: (checkpoint, bool(finished)) for shard_id, checkpoint, finished in rows}


def claim_checkpoint(conn: psycopg.Connection, claim: CheckpointClaim) -> None:
    """Move the checkpoint (and renew the lease) if the lease is still ours at ``previous``.

    Must be the first statement of the batch's transaction: it takes the lease row's lock, so
    a processor stealing the lease waits for this commit and then resumes after it. Raises
    ``LeaseLostError`` when the token no longer stands.
    """
    row = conn.execute(
        "UPDATE shard_leases SET checkpoint = %s, finished = %s, updated_at = now(), "
        "expires_at = now() + make_interval(secs => %s) "
        "WHERE stream = %s AND shard_id = %s AND owner = %s AND token = %s "
        "AND checkpoint IS NOT DISTINCT FROM %s RETURNING 1",
        (
            claim.checkpoint,
            claim.finished,
            claim.lease_seconds,
            claim.stream,
            claim.shard_id,
            claim.owner,
            claim.token,
            claim.previous,
        ),
    ).fetchone()
    if row is None:
        raise LeaseLostError(f"lease on {claim.shard_id} was lost; batch not committed")
