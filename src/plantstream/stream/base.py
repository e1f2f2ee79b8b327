"""The stream contract every backend fulfils: an ordered, sharded, replayable log.

Shards cover the 128-bit MD5 hash space of partition keys exactly as Kinesis does; a shard
that was split or merged is *closed*: it keeps its records, takes no new ones, and its
children list it as a parent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

HASH_SPACE_END = 2**128 - 1


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard: its id, lineage and the inclusive hash range it receives."""

    shard_id: str
    parent_ids: tuple[str, ...]
    start_hash: int
    end_hash: int
    closed: bool = False

    def covers(self, hash_key: int) -> bool:
        return self.start_hash <= hash_key <= self.end_hash


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """A record as read back: ``sequence`` orders records within one shard."""

    sequence: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A read from one shard: the records after the position asked for, in order.

    ``end_of_shard`` is True once a closed shard has been read to its very end; the
    processor then finishes it so its children may start.
    """

    records: list[StreamRecord]
    end_of_shard: bool
    behind_ms: int | None = None  # how far the reader is behind the shard's tip, when known
    # the shard pushed back (read throttling): read it again no sooner than this many
    # seconds; a reader skips it meanwhile instead of sleeping, so other shards keep flowing
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class PutEntry:
    partition_key: str
    data: bytes


class StreamProducer(Protocol):
    """Writes records; returns only once every record is durably in the stream."""

    def put(self, entries: Sequence[PutEntry]) -> list[str]:
        """Write ``entries`` (any number); return their sequence numbers in order.

        Raises ``StreamThrottledError`` when the stream pushes back and
        ``StreamUnavailableError`` when it cannot be reached; in both cases the caller must
        treat the whole call as not accepted (a retry may store a record twice, which the
        processor de-duplicates).
        """
        ...


class StreamConsumer(Protocol):
    """Reads shards from a checkpoint."""

    def list_shards(self) -> list[ShardInfo]:
        """Every shard still readable, open or closed, with its parents."""
        ...

    def read(self, shard_id: str, after: str | None, limit: int) -> ReadResult:
        """Up to ``limit`` records of ``shard_id`` after sequence ``after`` (None: the start).

        Never blocks to back off: a throttled shard answers at once with no records and a
        ``retry_after``.
        """
        ...


class Stream(StreamProducer, StreamConsumer, Protocol):
    """A backend that both writes and reads."""

    name: str

    def close(self) -> None: ...
