"""The forwarder: the queue's oldest readings to plantstream's HTTP ingest, in order, once.

A batch leaves the queue only in the transaction that records its 202; readings refused one by
one in that 202 move to the dead-letter table with their code (a reading too old for the live
window is held instead: it waits for the history path). Push-back (429, 503, 408) and failed
connections are retried with backoff that honours ``Retry-After``; a whole body refused 4xx is
split until the reading at fault is found and dead-lettered, so nothing is retried forever.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from pydantic import SecretStr

from plantstream.edge.config import Destination
from plantstream.edge.queue import HELD_HISTORY, EdgeQueue, Queued
from plantstream.edge.status import EdgeStatus
from plantstream.errors import ErrorCode
from plantstream.model.metrics import QUALITY_NAMES
from plantstream.model.readings import now_us

log = logging.getLogger("plantstream.edge")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PUSH_BACK = frozenset({408, 429, 500, 502, 503, 504})
KEY_REFUSED = frozenset({401, 403})
TOO_LARGE = frozenset({413})


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def rfc3339(ts_us: int) -> str:
    """Exact to the microsecond (plantstream identifies a reading by its timestamp).

    The date and time of day are formatted once per second (a backlog has many readings of
    each second), the microseconds every time.
    """
    seconds, micros = divmod(ts_us, 1_000_000)
    return f"{_second(seconds)}.{micros:06d}+00:00"


def encode(facility: str, rows: Sequence[Queued]) -> bytes:
    readings = []
    for r in rows:
        item: dict[str, object] = {
            "device": r.device,
            "metric": r.metric,
            "ts": rfc3339(r.ts_us),
            "value": r.value,
            "quality": QUALITY_NAMES.get(r.quality, "bad"),
        }
        if r.unit is not None:
            item["unit"] = r.unit
        readings.append(item)
    return orjson.dumps({"facility": facility, "readings": readings})


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return None if seconds is None or not math.isfinite(seconds) else max(0.0, seconds)


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}"


class Forwarder:
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
        self._key = key
        self._client = client or httpx.Client(timeout=destination.timeout_seconds)
        self._url = destination.url.rstrip("/") + "/v1/readings"
        self._batch = destination.batch_size
        self._failures = 0
        self._retry_wait = 0.0

    def close(self) -> None:
        self._client.close()

    def run(self, stop: threading.Event, *, idle_seconds: float = 0.05) -> None:
        """Forward until ``stop``; waits between retries return early when stopped."""
        while not stop.is_set():
            wait = self.step()
            if wait is None:
                stop.wait(idle_seconds)
            elif wait > 0:
                stop.wait(wait)

    def step(self) -> float | None:
        """Send one batch. None: nothing to send; else seconds to wait before the next."""
        rows = self.queue.peek(self._batch, now_us=now_us())
        if not rows:
            self.status.forward.state = "idle"
            return None
        rows, dead = _locally_invalid(rows)
        if dead:
            self._dead(dead)
        if not rows:
            return 0.0
        return self._send(rows)

    def _send(self, rows: list[Queued]) -> float:
        fwd = self.status.forward
        fwd.state = "sending"
        headers = {
            "Authorization": f"Bearer {self._key.get_secret_value()}",
            "Content-Type": "application/json",
        }
        try:
            response = self._client.post(
                self._url, content=encode(self.facility, rows), headers=headers
            )
        except httpx.HTTPError as exc:
            return self._back_off(f"{type(exc).__name__}: {exc}", "connection", None)
        status = response.status_code
        if status == 202:
            self._retry_wait = 0.0
            self._accepted(rows, response)
            return self._retry_wait
        code = _code(response)
        if status in PUSH_BACK:
            return self._back_off(f"{status} {code}", code, retry_after(response))
        if status in KEY_REFUSED:
            fwd.state = "key_refused"
            return self._back_off(f"{status} {code}: the destination refuses the key", code, None)
        if status in TOO_LARGE or len(rows) > 1:
            self._batch = max(1, len(rows) // 2)  # find the part at fault
            self.status.metrics.forward_errors.labels(code).inc()
            log.warning("batch of %d refused %d %s: sending halves", len(rows), status, code)
            return 0.0
        self._dead([(rows[0].id, code, f"refused {status} as a whole body")])
        return 0.0

    def _accepted(self, rows: list[Queued], response: httpx.Response) -> None:
        try:
            rejected = response.json().get("rejected", [])
        except ValueError:
            rejected = []
        dead: list[tuple[int, str, str]] = []
        history: list[int] = []
        retry_from = len(rows)  # a reading refused "not now" (429/503 code) and all after it
        for item in rejected:
            index = item.get("index")
            if not isinstance(index, int) or not 0 <= index < len(rows):
                continue
            code = str(item.get("code", "rejected"))
            if code == "timestamp_too_old":
                history.append(rows[index].id)
            elif _retryable(code):
                retry_from = min(retry_from, index)
            else:
                dead.append((rows[index].id, code, str(item.get("reason", ""))))
        # what follows a retryable refusal stays queued, so each signal stays in order; the
        # accepted ones among them are sent again and stored once
        kept = {r.id for r in rows[retry_from:]}
        dead = [d for d in dead if d[0] not in kept]
        history = [i for i in history if i not in kept]
        refused = {i for i, _, _ in dead} | set(history) | kept
        delivered = [r.id for r in rows if r.id not in refused]
        if history:
            self.queue.hold(history, HELD_HISTORY)
        self.queue.ack(delivered, dead, now_us=now_us())
        for _, code, _ in dead:
            self.status.metrics.rejected.labels(code).inc()
        if dead:
            log.warning(
                "plantstream refused %d readings (first: %s): moved to the dead-letter table",
                len(dead),
                dead[0][1],
            )
        fwd = self.status.forward
        fwd.last_success_us, fwd.last_error, fwd.retry_at_us = now_us(), None, None
        fwd.recent.append((time.monotonic(), len(delivered)))
        self.status.metrics.forwarded.inc(len(delivered))
        if kept:
            code = next(str(i.get("code")) for i in rejected if i.get("index") == retry_from)
            self._retry_wait = self._back_off(f"202 with {len(kept)} held back: {code}", code, 1.0)
            return
        self._failures = 0
        self._batch = min(self.dest.batch_size, self._batch * 2)

    def _dead(self, dead: list[tuple[int, str, str]]) -> None:
        self.queue.ack([], dead, now_us=now_us())
        for _, code, _ in dead:
            self.status.metrics.rejected.labels(code).inc()

    def _back_off(self, error: str, kind: str, after: float | None) -> float:
        self._failures += 1
        if after is None:
            base = min(self.dest.max_backoff_seconds, 0.25 * 2 ** min(self._failures, 10))
            after = base * (0.5 + random.random() / 2)  # noqa: S311  # jitter, not crypto
        fwd = self.status.forward
        if fwd.state != "key_refused":
            fwd.state = "backing_off"
        fwd.last_error, fwd.retry_at_us = error, now_us() + int(after * 1e6)
        self.status.metrics.forward_errors.labels(kind).inc()
        level = (
            logging.WARNING
            if self._failures in (1, 10) or self._failures % 100 == 0
            else logging.DEBUG
        )
        log.log(
            level,
            "forwarding failed (%s); retrying in %.1f s",
            error,
            after,
            extra={"failures": self._failures},
        )
        return after


def _retryable(code: str) -> bool:
    """A per-reading code that means "not now" (a quota, push-back), not "never"."""
    try:
        return ErrorCode(code).status in (429, 503)
    except ValueError:
        return False


def _locally_invalid(rows: list[Queued]) -> tuple[list[Queued], list[tuple[int, str, str]]]:
    """Readings no ingest could take (no value, not finite): dead-lettered without sending."""
    good: list[Queued] = []
    dead: list[tuple[int, str, str]] = []
    for r in rows:
        if r.value is None or isinstance(r.value, str):
            dead.append((r.id, "no_value", "the source sent no value (a bad sample, or a null)"))
        elif isinstance(r.value, float) and not math.isfinite(r.value):
            dead.append((r.id, "value_not_finite", "the source gave a value that is not finite"))
        else:
            good.append(r)
    return good, dead
