"""Who may send now: a token bucket per key and a cap on batches in work at once.

Both answer with a push-back error (HTTP 429 + Retry-After), never with a queue.
"""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second, bursts up to twice that."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * 2)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def admit(self, key_id: str) -> float:
        """0 if the request may go ahead, else the seconds to wait before retrying."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self.rate


class InflightGate:
    """At most ``limit`` requests inside at once; the rest are turned away, not queued.

    Turning away is the point: a queue in front of a saturated server only grows memory and
    latency, while a 429 with Retry-After lets the gateway keep the batch and try again.
    Safe from any thread: adapters other than HTTP's event loop may share the gate.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inside = 0
        self._lock = threading.Lock()

    def try_enter(self) -> bool:
        with self._lock:
            if self.inside >= self.limit:
                return False
            self.inside += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.inside -= 1
