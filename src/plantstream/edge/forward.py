"""The forwarder: the queue's readings to plantstream, several batches in flight, each once.

The queue's readings are split into lanes by signal (``Lanes``); each of ``in_flight`` senders
owns some lanes and sends their oldest readings one batch at a time, so batches travel in
parallel while every signal stays in order. A batch leaves the queue only in the transaction
that records its 202 (per-batch rows: a sender deletes exactly what it sent). Readings refused
one by one in that 202 move to the dead-letter table with their code; one too old for the live
window goes to the history sender instead (``POST /v1/readings/history``, answered 200 once
stored). Push-back (429, 503, 408) and failed connections are retried with backoff that
honours ``Retry-After``, and hold every live sender (plantstream asked us to wait, not one
lane); a whole body refused 4xx is split until the reading at fault is found and
dead-lettered, so nothing is retried forever.
"""

from __future__ import annotations

import logging
import random
import threading
import time

import httpx
from pydantic import SecretStr

from plantstream.edge.config import Destination
from plantstream.edge.queue import ALL_LANES, HELD_HISTORY, EdgeQueue, Lanes, Queued
from plantstream.edge.status import EdgeStatus, ForwardStatus
from plantstream.edge.wire import (
    KEY_REFUSED,
    PUSH_BACK,
    TOO_LARGE,
    Dead,
    encode,
    error_code,
    locally_invalid,
    retry_after,
    retryable,
    rfc3339,
)
from plantstream.model.readings import now_us

__all__ = ["Forwarder", "rfc3339"]

log = logging.getLogger("plantstream.edge")
MISSING = frozenset({404, 405})  # a plantstream without the endpoint (older than the agent)


class Gate:
    """A time before which nobody sends: push-back from plantstream holds all its senders."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def close_for(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def wait_seconds(self) -> float:
        return max(0.0, self._until - time.monotonic())


class Sender:
    """One lane set of the live path: peek, send, ack, one batch at a time, in order."""

    path = "/v1/readings"
    ok_status = 202
    name = "live"

    def __init__(self, fwd: Forwarder, gate: Gate, lanes: Lanes = ALL_LANES) -> None:
        self.fwd, self.queue, self.gate, self.lanes = fwd, fwd.queue, gate, lanes
        self.url = fwd.dest.url.rstrip("/") + self.path
        self.batch = fwd.dest.batch_size
        self.failures = 0
        self._retry_wait = 0.0

    @property
    def state(self) -> ForwardStatus:
        return self.fwd.status.forward

    def peek(self) -> list[Queued]:
        return self.queue.peek(self.batch, now_us=now_us(), lanes=self.lanes)

    def ack(self, delivered: list[int], dead: list[Dead]) -> None:
        self.queue.ack(delivered, dead, now_us=now_us(), lanes=self.lanes)

    def idle(self) -> None:
        if self.queue.depth == 0:
            self.state.state = "idle"

    def run(self, stop: threading.Event, idle_seconds: float) -> None:
        """Send until ``stop``; every wait returns early when stopped."""
        while not stop.is_set():
            held = self.gate.wait_seconds()
            if held > 0:
                stop.wait(held)
                continue
            wait = self.step()
            if wait is None:
                stop.wait(idle_seconds)
            elif wait > 0:
                stop.wait(wait)

    def step(self) -> float | None:
        """Send one batch. None: nothing to send; else seconds to wait before the next."""
        rows = self.peek()
        if not rows:
            self.idle()
            return None
        rows, dead = locally_invalid(rows)
        if dead:
            self._dead(dead)
        if not rows:
            return 0.0
        return self._send(rows)

    def _send(self, rows: list[Queued]) -> float:
        self.state.state = "sending"
        headers = {
            "Authorization": f"Bearer {self.fwd.key.get_secret_value()}",
            "Content-Type": "application/json",
        }
        try:
            response = self.fwd.client.post(
                self.url, content=encode(self.fwd.facility, rows), headers=headers
            )
        except httpx.HTTPError as exc:
            return self._back_off(f"{type(exc).__name__}: {exc}", "connection", None)
        status = response.status_code
        if status == self.ok_status:
            self._retry_wait = 0.0
            self._accepted(rows, response)
            return self._retry_wait
        code = error_code(response)
        if status in PUSH_BACK:
            return self._back_off(f"{status} {code}", code, retry_after(response))
        if status in KEY_REFUSED:
            self.state.state = "key_refused"
            return self._back_off(f"{status} {code}: the destination refuses the key", code, None)
        missing = self._missing(status, code)
        if missing is not None:
            return missing
        if status in TOO_LARGE or len(rows) > 1:
            self.batch = max(1, len(rows) // 2)  # find the part at fault
            self.fwd.status.metrics.forward_errors.labels(code).inc()
            log.warning("batch of %d refused %d %s: sending halves", len(rows), status, code)
            return 0.0
        self._dead([(rows[0].id, code, f"refused {status} as a whole body")])
        return 0.0

    def _missing(self, status: int, code: str) -> float | None:
        """What to do when plantstream has no such endpoint (None: treat as a refusal)."""
        return None

    def _history(self, ids: list[int]) -> None:
        """Readings the live ingest found too old: held for the history sender."""
        self.queue.hold(ids, HELD_HISTORY)

    def _accepted(self, rows: list[Queued], response: httpx.Response) -> None:
        try:
            rejected = response.json().get("rejected", [])
        except (ValueError, AttributeError):
            rejected = []
        dead: list[Dead] = []
        history: list[int] = []
        retry_from = len(rows)  # a reading refused "not now" (429/503 code) and all after it
        for item in rejected:
            index = item.get("index")
            if not isinstance(index, int) or not 0 <= index < len(rows):
                continue
            code = str(item.get("code", "rejected"))
            if code == "timestamp_too_old" and self.name == "live":
                history.append(rows[index].id)
            elif retryable(code):
                retry_from = min(retry_from, index)
            else:
                reason = item.get("reason", item.get("message", ""))
                dead.append((rows[index].id, code, str(reason)))
        # what follows a retryable refusal stays queued, so each signal stays in order; the
        # accepted ones among them are sent again and stored once
        kept = {r.id for r in rows[retry_from:]}
        dead = [d for d in dead if d[0] not in kept]
        history = [i for i in history if i not in kept]
        refused = {i for i, _, _ in dead} | set(history) | kept
        delivered = [r.id for r in rows if r.id not in refused]
        if history:
            self._history(history)
        self.ack(delivered, dead)
        self._count_dead(dead)
        fwd = self.state
        fwd.last_success_us, fwd.last_error, fwd.retry_at_us = now_us(), None, None
        fwd.recent.append((time.monotonic(), len(delivered)))
        self._delivered(len(delivered))
        if kept:
            code = next(str(i.get("code")) for i in rejected if i.get("index") == retry_from)
            self._retry_wait = self._back_off(f"{self.ok_status} with {len(kept)} held back: "
                                              f"{code}", code, 1.0)  # fmt: skip
            return
        self.failures = 0
        self.batch = min(self.fwd.dest.batch_size, self.batch * 2)

    def _delivered(self, n: int) -> None:
        self.fwd.status.metrics.forwarded.inc(n)

    def _dead(self, dead: list[Dead]) -> None:
        self.ack([], dead)
        self._count_dead(dead)

    def _count_dead(self, dead: list[Dead]) -> None:
        for _, code, _ in dead:
            self.fwd.status.metrics.rejected.labels(code).inc()
        if dead:
            log.warning(
                "plantstream refused %d readings (%s path; first: %s): moved to the dead-letter "
                "table",
                len(dead), self.name, dead[0][1],
            )  # fmt: skip

    def _back_off(self, error: str, kind: str, after: float | None) -> float:
        self.failures += 1
        if after is None:
            base = min(self.fwd.dest.max_backoff_seconds, 0.25 * 2 ** min(self.failures, 10))
            after = base * (0.5 + random.random() / 2)  # noqa: S311  # jitter, not crypto
        self.gate.close_for(after)
        fwd = self.state
        if fwd.state not in ("key_refused", "unavailable"):
            fwd.state = "backing_off"
        fwd.last_error, fwd.retry_at_us = error, now_us() + int(after * 1e6)
        self.fwd.status.metrics.forward_errors.labels(kind).inc()
        level = (
            logging.WARNING
            if self.failures in (1, 10) or self.failures % 100 == 0
            else logging.DEBUG
        )
        log.log(
            level,
            "forwarding failed (%s path: %s); retrying in %.1f s",
            self.name,
            error,
            after,
            extra={"failures": self.failures},
        )
        return after


class HistorySender(Sender):
    """Readings older than the live window, to ``POST /v1/readings/history`` (200 once stored).

    Every reading it refuses on its own is dead-lettered with its code and message (it would
    be refused again); a plantstream without the endpoint keeps them held and says so.
    """

    path = "/v1/readings/history"
    ok_status = 200
    name = "history"

    @property
    def state(self) -> ForwardStatus:
        return self.fwd.status.history

    def peek(self) -> list[Queued]:
        if not self.queue.held.get(HELD_HISTORY):
            return []
        return self.queue.peek_history(self.batch)

    def ack(self, delivered: list[int], dead: list[Dead]) -> None:
        self.queue.ack(delivered, dead, now_us=now_us(), held=HELD_HISTORY)

    def idle(self) -> None:
        self.state.state = "idle"

    def _missing(self, status: int, code: str) -> float | None:
        if status not in MISSING:
            return None
        self.state.state = "unavailable"
        return self._back_off(
            f"{status} {code}: plantstream has no {self.path} (older than this agent)",
            "history_unavailable",
            self.fwd.dest.max_backoff_seconds,
        )

    def _delivered(self, n: int) -> None:
        self.fwd.status.metrics.history_forwarded.inc(n)
        self.state.state = "sending"


class Forwarder:
    """The live senders (``destination.in_flight`` of them) and the history sender."""

    def __init__(
        self,
        *,
        queue: EdgeQueue,
        status: EdgeStatus,
        destination: Destination,
        facility: str,
        key: SecretStr,
        client: httpx.Client | None = None,
    ) -> None:
        self.queue, self.status, self.dest, self.facility = queue, status, destination, facility
        self.key = key
        n = destination.in_flight
        self.client = client or httpx.Client(
            timeout=destination.timeout_seconds,
            limits=httpx.Limits(max_connections=n + 1, max_keepalive_connections=n + 1),
        )
        live = Gate()
        self.senders: list[Sender] = [Sender(self, live, Lanes(i, n)) for i in range(n)]
        self.history = HistorySender(self, Gate())

    def close(self) -> None:
        self.client.close()

    def run(self, stop: threading.Event, *, idle_seconds: float = 0.05) -> None:
        """Forward until ``stop``: each sender on its own thread; returns when all stopped."""
        threads = [
            threading.Thread(
                target=s.run, args=(stop, idle_seconds), name=f"edge-forward-{i}", daemon=True
            )
            for i, s in enumerate([*self.senders, self.history])
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def step(self) -> float | None:
        """One batch from each sender in turn (for a caller that drives it, e.g. a test)."""
        waits = [s.step() for s in [*self.senders, self.history]]
        known = [w for w in waits if w is not None]
        return max(known) if known else None
