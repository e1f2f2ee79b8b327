"""The processor's repair of rollup buckets that late data made dirty, after its commits.

A commit only marks an overlapped bucket dirty (``store/batches.py``); this runs one bounded
pass (``store/rollup_repair.py``) at most every ``every_s``, at once again while the last
pass was full, and on every idle step, so a burst of late batches costs one recompute per
bucket, not one per batch. A failure is logged and counted; the buckets stay dirty (never
wrong: the series flags them) and the next pass tries again. It never stops the data.
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every_s < 0 or limit < 1:
            raise ValueError("every_s must be >= 0 and limit >= 1")
        self.every_s = every_s
        self.limit = limit
        self._clock = clock
        self._last = -float("inf")
        self._more = True  # a start may find buckets a previous process left dirty

    def repair_due(self, conn: psycopg.Connection, *, idle: bool) -> int:
        """Run one pass when due; return how many buckets it repaired (0: none, or not due)."""
        now = self._clock()
        if not (idle or self._more or now - self._last >= self.every_s):
            return 0
        self._last = now
        try:
            done = repair_rollups(conn, limit=self.limit)
        except psycopg.Error as exc:
            metrics.ERRORS.labels("rollup_repair").inc()
            log.warning("rollup repair failed (%s); the buckets stay dirty until the next", exc)
            self._more = False
            return 0
        for width, n in zip(_WIDTHS, done.repaired, strict=True):
            if n:
                REPAIRED.labels(width).inc(n)
        self._more = done.full
        return sum(done.repaired)
