"""Who may send now: token buckets (per key, per facility) and a cap on batches in work at once.

Both answer with a push-back error (HTTP 429 + Retry-After), never with a queue.
"""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, bursts up to ``burst`` (twice the rate
    unless given). A request costs one token unless it says otherwise (a batch of readings
    costs one per reading).

    Buckets of keys that went quiet (full again) are dropped once more than ``max_keys`` are
    held, so keys a client makes up (facilities, for an admin key) cannot grow it for ever.
    """

    def __init__(self, rate: float, *, burst: float | None = None, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * 2 if burst is None else burst)
        self.max_keys = max_keys
        self._prune_at = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def admit(self, key_id: str, cost: float = 1.0) -> float:
        """0 if the request may go ahead (its ``cost`` is taken), else the seconds to wait."""
        now = time.monotonic()
        cost = min(cost, self.burst)  # a cost beyond the burst would wait for ever
        with self._lock:
            tokens = self._tokens(key_id, now)
            if len(self._buckets) >= self._prune_at and key_id not in self._buckets:
                self._prune(now)
            if tokens >= cost:
                self._buckets[key_id] = (tokens - cost, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (cost - tokens) / self.rate

    def take_up_to(self, key_id: str, cost: int) -> int:
        """Take as many whole tokens as there are, up to ``cost``; how many were taken."""
        now = time.monotonic()
        with self._lock:
            tokens = self._tokens(key_id, now)
            taken = min(cost, int(tokens))
            self._buckets[key_id] = (tokens - taken, now)
        return taken

    def wait_for(self, key_id: str, cost: float = 1.0) -> float:
        """What ``admit(key_id, cost)`` would answer now, taking nothing."""
        cost = min(cost, self.burst)
        with self._lock:
            tokens = self._tokens(key_id, time.monotonic())
        return 0.0 if tokens >= cost else (cost - tokens) / self.rate

    def refund(self, key_id: str, cost: float) -> None:
        """Give back what an admitted request did not use (it failed further on)."""
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.burst, time.monotonic()))
            self._buckets[key_id] = (min(self.burst, tokens + cost), last)

    def _tokens(self, key_id: str, now: float) -> float:
        tokens, last = self._buckets.get(key_id, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def _prune(self, now: float) -> None:
        """Drop full buckets (a missing bucket is a full one); the next prune waits until the
        count doubles, so a crowd of busy keys costs amortised O(1) per new key."""
        full = [k for k in self._buckets if self._tokens(k, now) >= self.burst]
        for key in full:
            del self._buckets[key]
        self._prune_at = max(self.max_keys, 2 * len(self._buckets))

    def __len__(self) -> int:
        return len(self._buckets)


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
