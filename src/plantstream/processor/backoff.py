"""Per-shard backoff without blocking: a shard the stream pushed back on is skipped until its
deadline while the other shards keep flowing (as quix-streams' Kinesis source does).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ShardBackoff:
    """Deadlines per shard, on a monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    def defer(self, shard_id: str, seconds: float) -> None:
        """Leave ``shard_id`` alone for ``seconds``."""
        self._until[shard_id] = self._clock() + max(0.0, seconds)

    def ready(self, shard_id: str) -> bool:
        until = self._until.get(shard_id)
        if until is None:
            return True
        if self._clock() >= until:
            del self._until[shard_id]
            return True
        return False

    def forget(self, shard_id: str) -> None:
        """The shard left this process (lease lost or shard ended)."""
        self._until.pop(shard_id, None)

    def clear(self) -> None:
        self._until.clear()
