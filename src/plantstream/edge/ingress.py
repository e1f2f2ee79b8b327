"""Where collectors hand readings over: a short in-memory buffer flushed to the queue in batches.

Batching amortises the fsync of a durable commit (one per flush, every ``flush_ms`` or
``max_batch`` readings). What sits in the buffer is not yet collected in the durable sense;
a crash loses at most one flush interval of readings, exactly like the same interval of the
agent being down (and the source's own history, where it keeps one, covers it).
"""

from __future__ import annotations

import logging
import threading
import time

from plantstream.edge.queue import EdgeQueue
from plantstream.edge.records import EdgeReading
from plantstream.edge.status import EdgeStatus
from plantstream.model.readings import now_us

log = logging.getLogger("plantstream.edge")


class Ingress:
    def __init__(
        self,
        queue: EdgeQueue,
        status: EdgeStatus,
        *,
        flush_ms: float = 50.0,
        max_batch: int = 5000,
    ) -> None:
        self.queue, self.status = queue, status
        self.flush_s, self.max_batch = flush_ms / 1000.0, max_batch
        self._buffer: list[EdgeReading] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._last_refusal_log = 0.0

    def add(self, readings: list[EdgeReading]) -> None:
        """Hand readings over (never blocks the collector)."""
        if not readings:
            return
        with self._lock:
            self._buffer.extend(readings)
            if len(self._buffer) >= self.max_batch:
                self._wake.set()

    def flush(self) -> int:
        """Commit what is buffered; the number of readings stored."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        stored = 0
        for start in range(0, len(batch), self.max_batch):
            stored += self._commit(batch[start : start + self.max_batch])
        return stored

    def _commit(self, batch: list[EdgeReading]) -> int:
        result = self.queue.append(batch, now_us=now_us())
        metrics = self.status.metrics
        if result.dropped:
            metrics.dropped.inc(result.dropped)
            log.error(
                "queue full: dropped the %d oldest readings (overflow: drop_oldest)",
                result.dropped,
                extra={"dropped": result.dropped},
            )
        if result.refused:
            metrics.refused.inc(result.refused)
            metrics.overflow.set(1)
            if self.status.overflow_since_us is None:
                self.status.overflow_since_us = now_us()
            if time.monotonic() - self._last_refusal_log > 5.0:  # loud, but not a log flood
                self._last_refusal_log = time.monotonic()
                log.error(
                    "QUEUE FULL: refused %d new readings (overflow: refuse; depth %d, "
                    "budget %d readings / %d bytes); they are NOT collected",
                    result.refused,
                    self.queue.depth,
                    self.queue.config.max_readings,
                    self.queue.config.max_bytes,
                    extra={"refused": result.refused},
                )
        elif result.stored and self.status.overflow_since_us is not None:
            log.warning("queue has room again: readings are stored again")
            self.status.overflow_since_us = None
            metrics.overflow.set(0)
        return result.stored

    def run(self, stop: threading.Event) -> None:
        """Flush every ``flush_ms`` until ``stop``; a last flush on the way out."""
        while not stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self.flush()
        self.flush()
