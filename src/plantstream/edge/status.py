"""What the agent knows about itself: per-source connection state, gaps, forwarding, metrics.

One ``EdgeStatus`` is shared by the collectors, the forwarder and the health endpoint; its
Prometheus metrics live in a registry of their own (one agent per registry).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from plantstream.model.readings import now_us

log = logging.getLogger("plantstream.edge")


@dataclass
class Gap:
    source: str
    start_us: int
    end_us: int
    reason: str

    @property
    def seconds(self) -> float:
        return (self.end_us - self.start_us) / 1e6


@dataclass
class SourceStatus:
    name: str
    kind: str
    state: str = "connecting"  # connecting | connected | disconnected | unresponsive
    since_us: int = field(default_factory=now_us)
    last_value_us: int | None = None
    last_error: str | None = None
    gaps: deque[Gap] = field(default_factory=lambda: deque(maxlen=20))
    down_since_us: int | None = None
    # what the server says of each signal: OPC UA EUInformation / EURange, by device/metric
    engineering: dict[str, dict[str, object]] = field(default_factory=dict)


@dataclass
class ForwardStatus:
    state: str = "idle"  # idle | sending | backing_off | key_refused (| unavailable: history)
    last_success_us: int | None = None
    last_error: str | None = None
    retry_at_us: int | None = None
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))

    def rate(self, window: float = 10.0) -> float:
        """Readings forwarded per second over the last ``window`` seconds."""
        cutoff = time.monotonic() - window
        return sum(n for t, n in list(self.recent) if t >= cutoff) / window


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        p = "plantstream_edge_"
        self.collected = Counter(
            p + "readings_collected", "readings collected", ["source"], registry=r
        )
        self.refused = Counter(
            p + "readings_refused", "readings NOT stored: the queue is full (overflow)", registry=r
        )
        self.dropped = Counter(
            p + "readings_dropped", "queued readings deleted by the drop_oldest policy", registry=r
        )
        self.forwarded = Counter(p + "readings_forwarded", "readings answered 202", registry=r)
        self.history_forwarded = Counter(
            p + "readings_history_forwarded",
            "readings older than the live window stored through the history path",
            registry=r,
        )
        self.rejected = Counter(
            p + "readings_dead_lettered", "readings refused by plantstream", ["code"], registry=r
        )
        self.forward_errors = Counter(
            p + "forward_errors", "batches not accepted (retried)", ["kind"], registry=r
        )
        self.connected = Gauge(
            p + "source_connected", "1 when the source answers", ["source"], registry=r
        )
        self.last_value = Gauge(
            p + "source_last_value_timestamp_seconds", "newest value's time", ["source"], registry=r
        )
        self.gaps = Counter(
            p + "source_gaps", "collection gaps (source away)", ["source"], registry=r
        )
        self.gap_seconds = Counter(
            p + "source_gap_seconds", "seconds without collection", ["source"], registry=r
        )
        self.source_errors = Counter(
            p + "source_errors", "read or subscription errors", ["source", "kind"], registry=r
        )
        self.depth = Gauge(p + "queue_depth", "readings waiting to be forwarded", registry=r)
        self.held = Gauge(
            p + "queue_held", "readings kept but not forwardable", ["reason"], registry=r
        )
        self.oldest_age = Gauge(p + "queue_oldest_age_seconds", "oldest reading's wait", registry=r)
        self.queue_bytes = Gauge(p + "queue_bytes", "bytes of the queue database", registry=r)
        self.dead_letters = Gauge(
            p + "queue_dead_letters", "readings in the dead-letter table", registry=r
        )
        self.overflow = Gauge(
            p + "queue_overflow", "1 while readings are being refused", registry=r
        )


class EdgeStatus:
    """Shared, thread-safe enough (single attribute writes) state of one agent."""

    def __init__(self) -> None:
        self.metrics = EdgeMetrics()
        self.sources: dict[str, SourceStatus] = {}
        self.forward = ForwardStatus()
        self.history = ForwardStatus()  # the history path's sender (readings past the window)
        self.overflow_since_us: int | None = None
        self.on_gap: Callable[[Gap], None] | None = None
        self._lock = threading.Lock()

    def source(self, name: str, kind: str) -> SourceStatus:
        with self._lock:
            return self.sources.setdefault(name, SourceStatus(name, kind))

    def set_state(self, name: str, state: str, error: str | None = None) -> None:
        """Move a source to ``state``; going down opens a gap, coming back closes and reports it."""
        src = self.sources[name]
        now = now_us()
        if state == src.state:
            src.last_error = error or src.last_error
            return
        up = state == "connected"
        if not up and src.down_since_us is None:
            src.down_since_us = now
            log.warning("source %s is %s: %s", name, state, error or "", extra={"source": name})
        if up and src.down_since_us is not None:
            gap = Gap(name, src.down_since_us, now, src.last_error or src.state)
            src.gaps.append(gap)
            if self.on_gap is not None:
                self.on_gap(gap)
            self.metrics.gaps.labels(name).inc()
            self.metrics.gap_seconds.labels(name).inc(max(0.0, gap.seconds))
            log.warning(
                "source %s is back after a gap of %.1f s (%s): no readings were collected in it",
                name,
                gap.seconds,
                gap.reason,
                extra={"source": name, "gap_seconds": gap.seconds},
            )
            src.down_since_us = None
        src.state, src.since_us = state, now
        src.last_error = error if not up else None
        self.metrics.connected.labels(name).set(1 if up else 0)

    def collected(self, name: str, n: int, ts_us: int) -> None:
        src = self.sources[name]
        src.last_value_us = max(src.last_value_us or 0, ts_us)
        self.metrics.collected.labels(name).inc(n)
        self.metrics.last_value.labels(name).set(src.last_value_us / 1e6)
