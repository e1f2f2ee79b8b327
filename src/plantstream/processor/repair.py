"""The processor's repair of rollup buckets that late data made dirty, after its commits.

A commit only marks an overlapped bucket dirty (``store/batches.py``); this runs one bounded
pass (``store/rollup_repair.py``) on every idle step and, while busy, at most every
``every_s`` and only as long as repairs take at most ``share`` of the processor's time (a
pass of d seconds waits d * (1 - share) / share before the next), so a burst of late batches
costs one recompute per bucket, not one per batch, and an overload of late data (the
processor never idle) still leaves the commits most of the time. A failure is logged and
counted; the buckets stay dirty (never wrong: the series flags them) and the next pass tries
again. It never stops the data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg
from prometheus_client import Counter

from plantstream.processor import metrics
from plantstream.store.rollup_repair import repair_rollups

log = logging.getLogger(__name__)

REPAIRED = Counter(
    "plantstream_processor_rollup_buckets_repaired",
    "Rollup buckets recomputed after late data made them dirty.",
    ["width"],
)
_WIDTHS = ("1m", "1h", "1d")


class RollupRepairer:
    """Decides when a repair pass is due and runs it on the connection it is given."""

    def __init__(
        self,
        *,
        every_s: float,
        limit: int,
        max_rows: int = 200_000,
        share: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every_s < 0 or limit < 1 or max_rows < 1 or not 0 < share <= 1:
            raise ValueError("every_s >= 0, limit >= 1, max_rows >= 1 and 0 < share <= 1")
        self.every_s = every_s
        self.limit = limit
        self.max_rows = max_rows
        self.share = share
        self._clock = clock
        self._next = -float("inf")  # the start may find buckets a previous process left dirty

    def repair_due(self, conn: psycopg.Connection, *, idle: bool) -> int:
        """Run one pass when due; return how many buckets it repaired (0: none, or not due)."""
        started = self._clock()
        if not idle and started < self._next:
            return 0
        try:
            done = repair_rollups(conn, limit=self.limit, max_rows=self.max_rows)
        except psycopg.Error as exc:
            metrics.ERRORS.labels("rollup_repair").inc()
            log.warning("rollup repair failed (%s); the buckets stay dirty until the next", exc)
            self._next = started + self.every_s
            return 0
        took = self._clock() - started
        for width, n in zip(_WIDTHS, done.repaired, strict=True):
            if n:
                REPAIRED.labels(width).inc(n)
        wait = took * (1 - self.share) / self.share
        self._next = self._clock() + (wait if done.full else max(wait, self.every_s))
        return sum(done.repaired)
