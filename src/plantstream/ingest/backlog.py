"""Backlog-aware admission: a facility whose readings pile up unprocessed is refused
(429 ``quota_backlog``) until the processor has worked its backlog down below the bound.

Why: the stream is one queue per shard, so under a flood from one facility another facility's
readings wait behind the flooder's (2.3 s p50 / 4.1 s p99 to become visible, against 44 / 129 ms
alone: bench/results/soak_noisy.json). Bounding each facility's backlog bounds that wait to about
``bound / processor rate`` per flooding facility, whatever a flooder sends.

Nothing here is on the request path but a dictionary look-up: accepted readings are counted
locally and a flusher thread adds them to the Redis counters (``store.backlog``) every
``flush_seconds``, reading back the backlog of every facility it knows. So the view lags by that
much (a flooder may pass the bound by one flush interval of its readings), and while Redis does
not answer the view goes stale and is not used: admission then lets everyone in (the put itself
fails if the stream is down).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

import redis

from plantstream.errors import ErrorCode, RateLimitedError
from plantstream.ingest.metrics import count_refusal
from plantstream.store.backlog import IN, BacklogCounters

log = logging.getLogger(__name__)


class BacklogGate:
    """Refuses a facility past ``limit`` unprocessed readings; counts what ingest accepted."""

    def __init__(
        self,
        counters: BacklogCounters,
        *,
        limit: int,
        flush_seconds: float = 0.05,
        stale_seconds: float = 5.0,
        forget_seconds: float = 600.0,
        warn_every_seconds: float = 60.0,
    ) -> None:
        self.counters = counters
        self.limit = limit
        self.flush_seconds = flush_seconds
        self.stale_seconds = stale_seconds
        self.forget_seconds = forget_seconds  # a facility silent this long is not polled
        # While Redis does not answer, the flusher fails every ``flush_seconds``: one warning
        # when that starts, then one per ``warn_every_seconds`` (with the count), not 20 a second.
        self.warn_every_seconds = warn_every_seconds
        self.failed_flushes = 0  # in a row; 0 while Redis answers
        self._warned_at: float | None = None
        self._pending: defaultdict[str, int] = defaultdict(int)
        # facility -> (backlog, when read, backlog before, when read before)
        self._seen: dict[str, tuple[int, float, int, float]] = {}
        self._last_added: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the request path ------------------------------------------------------------------

    def check(self, facility: str) -> None:
        """429 ``quota_backlog`` if ``facility``'s unprocessed readings are past the bound."""
        seen = self._seen.get(facility)
        if seen is None:
            return
        backlog, at, before, before_at = seen
        if backlog <= self.limit or time.monotonic() - at > self.stale_seconds:
            return
        count_refusal(ErrorCode.QUOTA_BACKLOG, facility)
        raise RateLimitedError(
            f"facility {facility!r} has {backlog} readings the processor has not stored yet, "
            f"more than its quota of {self.limit} (quota_backlog); nothing was accepted",
            retry_after=_retry_after(backlog - self.limit, before - backlog, at - before_at),
            code=ErrorCode.QUOTA_BACKLOG,
        )

    def added(self, facility: str, readings: int) -> None:
        """``readings`` of ``facility`` are in the stream now (counted at the next flush)."""
        if readings:
            with self._lock:
                self._pending[facility] += readings
            self._ensure_flusher()

    # -- the flusher -------------------------------------------------------------------------

    def flush(self) -> None:
        """Add what was accepted since the last flush; read every known facility's backlog."""
        now = time.monotonic()
        with self._lock:
            pending, self._pending = self._pending, defaultdict(int)
            for facility in pending:
                self._last_added[facility] = now
            for facility, last in list(self._last_added.items()):
                if now - last > self.forget_seconds:
                    del self._last_added[facility]
                    self._seen.pop(facility, None)
            counts = dict.fromkeys(self._last_added, 0)
        counts.update(pending)
        try:
            backlogs = self.counters.add(IN, counts)
        except redis.RedisError as exc:
            with self._lock:  # put back: counted at the next flush that reaches Redis
                for facility, n in pending.items():
                    self._pending[facility] += n
            self._failed(exc, now)
            return
        if self.failed_flushes:
            log.warning(
                "backlog counters available again after %d failed flushes; admission uses "
                "the backlog again",
                self.failed_flushes,
            )
            self.failed_flushes, self._warned_at = 0, None
        read_at = time.monotonic()
        for facility, backlog in backlogs.items():
            previous = self._seen.get(facility)
            before, before_at = (previous[0], previous[1]) if previous else (backlog, read_at)
            self._seen[facility] = (backlog, read_at, before, before_at)

    def _failed(self, exc: redis.RedisError, now: float) -> None:
        self.failed_flushes += 1
        if self._warned_at is not None and now - self._warned_at < self.warn_every_seconds:
            return
        self._warned_at = now
        log.warning(
            "backlog counters unavailable (%s; %d flushes in a row); admission uses no backlog "
            "until Redis answers",
            exc,
            self.failed_flushes,
        )

    def _ensure_flusher(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ingest-backlog", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # never let the flusher die: admission would freeze its view
                log.exception("backlog flush failed")

    def close(self) -> None:
        """Stop the flusher after one last flush (what was accepted gets counted)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()


def _retry_after(excess: int, drained: int, seconds: float) -> float:
    """Seconds until ``excess`` readings are worked off at the rate last seen (1 s if none)."""
    if drained > 0 and seconds > 0:
        return min(30.0, max(0.1, excess / (drained / seconds)))
    return 1.0
