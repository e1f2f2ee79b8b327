"""Trimming the stream behind the processor: a shard's entries go once their checkpoint is
committed in PostgreSQL, so the stream holds what is not yet processed, not 24 hours of all.

The processor is the stream's only consumer and its committed checkpoint is the truth (a new
owner of the shard resumes after it), so removing entries up to that checkpoint loses
nothing. It runs for the shards this process committed on, at most every ``every_s`` per
shard (one ``XTRIM MINID`` each, a single-key command: cluster-safe). A failure is logged and
counted, and the next commit tries again; it never stops the data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from prometheus_client import Counter

from plantstream.errors import StreamError
from plantstream.processor import metrics

log = logging.getLogger(__name__)

TRIMMED = Counter(
    "plantstream_processor_stream_trimmed_entries",
    "Stream entries removed after their checkpoint was committed.",
)


@runtime_checkable
class TrimmableStream(Protocol):
    """A stream whose processed entries the consumer removes itself (Redis; not Kinesis)."""

    def trim(self, shard_id: str, through: str) -> int:
        """Remove the shard's entries up to and including ``through``; return how many."""


class StreamTrimmer:
    """Remembers each shard's newest committed checkpoint and trims up to it when due."""

    def __init__(
        self,
        stream: TrimmableStream,
        *,
        every_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.every_s = every_s
        self._clock = clock
        self._committed: dict[str, str] = {}  # shard -> checkpoint committed, not yet trimmed
        self._last: dict[str, float] = {}  # shard -> when it was last trimmed

    def committed(self, shard_id: str, checkpoint: str | None) -> None:
        """Call after the commit of ``checkpoint`` on ``shard_id`` (in PostgreSQL)."""
        if checkpoint is not None:
            self._committed[shard_id] = checkpoint

    def trim_due(self) -> int:
        """Trim every shard whose interval has run out; returns the entries removed."""
        now = self._clock()
        removed = 0
        for shard_id, checkpoint in list(self._committed.items()):
            if now - self._last.get(shard_id, -self.every_s) < self.every_s:
                continue
            self._last[shard_id] = now
            try:
                removed += self.stream.trim(shard_id, checkpoint)
            except StreamError as exc:
                metrics.ERRORS.labels("trim").inc()
                log.warning("could not trim %s up to %s: %s", shard_id, checkpoint, exc)
                continue
            if self._committed.get(shard_id) == checkpoint:
                del self._committed[shard_id]
        TRIMMED.inc(removed)
        return removed
