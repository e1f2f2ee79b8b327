"""Partition key -> hash key -> shard, the way Kinesis does it (MD5 as a 128-bit integer)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from plantstream.stream.base import HASH_SPACE_END, ShardInfo


def hash_key(partition_key: str) -> int:
    return int.from_bytes(hashlib.md5(partition_key.encode(), usedforsecurity=False).digest())


def even_ranges(count: int) -> list[tuple[int, int]]:
    """``count`` contiguous inclusive ranges covering the hash space, as CreateStream makes."""
    size = (HASH_SPACE_END + 1) // count
    ranges = []
    for index in range(count):
        start = index * size
        end = HASH_SPACE_END if index == count - 1 else (index + 1) * size - 1
        ranges.append((start, end))
    return ranges


def shard_for(partition_key: str, shards: Sequence[ShardInfo]) -> ShardInfo:
    """The open shard whose range holds the key's hash."""
    key = hash_key(partition_key)
    for shard in shards:
        if not shard.closed and shard.covers(key):
            return shard
    raise LookupError(f"no open shard covers hash key {key}")


def partition_key(facility: str, device: str) -> str:
    """All readings of one device share a key, so they land on one shard, in order."""
    return f"{facility}/{device}"
