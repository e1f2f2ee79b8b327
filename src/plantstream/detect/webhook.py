"""Alert notifications to a webhook: HMAC-signed JSON, retried with backoff, never blocking.

Events go into a bounded queue drained by a background thread; a full queue drops the
oldest event (counted) rather than slowing the processor. Each delivery is signed the
Standard Webhooks way: ``webhook-id`` (one per event, the same on every retry),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature: v1,<base64
HMAC-SHA256 of "id.timestamp.body">``. A receiver calls ``verify`` (or any Standard Webhooks
library, with the secret as ``whsec_`` + base64 of it): a captured delivery replayed later
is refused because its timestamp is outside the tolerance, or sooner because its id was
seen. ``X-Plantstream-Signature`` (HMAC of the body alone) is still sent for receivers of
older versions; it does not protect against replays.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping

import httpx
import orjson
from prometheus_client import Counter

from plantstream.detect.alerts import AlertEvent
from plantstream.errors import ErrorCode, InvalidInputError

log = logging.getLogger(__name__)

SENT = Counter("plantstream_webhook_events", "Alert events sent to the webhook.", ["outcome"])


DEFAULT_TOLERANCE_SECONDS = 300


def signature(secret: bytes, body: bytes) -> str:
    """The legacy ``X-Plantstream-Signature`` (the body alone: replayable)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign(secret: bytes, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature`` of one delivery: ``v1,<base64 HMAC-SHA256("id.timestamp.body")>``."""
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def event_id(event: AlertEvent) -> str:
    """One id per event, stable across retries and replays of the processor (dedupe on it)."""
    return f"alert_{event.alert_id}_{event.event}"


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    seen: Callable[[str], bool],
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """Check a delivery as a receiver must; its ``webhook-id``.

    ``headers`` are looked up in lower case; ``seen(id)`` returns True if the id was already
    taken and otherwise records it (keep ids for at least twice ``tolerance_seconds``).
    Raises ``InvalidInputError`` with ``invalid_signature`` (missing, malformed, wrong, or a
    timestamp more than ``tolerance_seconds`` away from ``now``) or ``replayed_event``.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit():
        raise InvalidInputError(ErrorCode.INVALID_SIGNATURE, "webhook-id or -timestamp missing")
    timestamp = int(stamp)
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        raise InvalidInputError(ErrorCode.INVALID_SIGNATURE, "webhook-timestamp out of tolerance")
    expected = sign(secret, msg_id=msg_id, timestamp=timestamp, body=body)
    offered = lowered.get("webhook-signature", "").split()
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise InvalidInputError(ErrorCode.INVALID_SIGNATURE, "webhook-signature does not match")
    if seen(msg_id):  # only after the signature holds: forged ids must not fill the record
        raise InvalidInputError(ErrorCode.REPLAYED_EVENT, f"event {msg_id[:64]!r} seen before")
    return msg_id


class WebhookNotifier:
    """Delivers alert events to ``url`` in the background."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        max_queue: int = 10_000,
        attempts: int = 6,
        base_delay: float = 0.5,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.secret = secret
        self.attempts = attempts
        self.base_delay = base_delay
        self.client = client or httpx.Client(timeout=10.0)
        self.sleep = sleep
        self.clock = clock
        self.queue: queue.Queue[AlertEvent | None] = queue.Queue(max_queue)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def notify(self, events: list[AlertEvent]) -> None:
        """Queue events; returns at once."""
        for event in events:
            while True:
                try:
                    self.queue.put_nowait(event)
                    break
                except queue.Full:
                    try:
                        self.queue.get_nowait()
                        self.dropped += 1
                        SENT.labels("dropped").inc()
                    except queue.Empty:
                        pass

    def _deliver(self, event: AlertEvent) -> bool:
        body = orjson.dumps(event.as_dict())
        msg_id = event_id(event)
        headers = {
            "Content-Type": "application/json",
            "X-Plantstream-Signature": signature(self.secret, body),
            "X-Plantstream-Event": event.event,
            "webhook-id": msg_id,
        }
        for attempt in range(self.attempts):
            timestamp = int(self.clock())  # signed again on each attempt: a fresh timestamp
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(
                self.secret, msg_id=msg_id, timestamp=timestamp, body=body
            )
            try:
                response = self.client.post(self.url, content=body, headers=headers)
                if response.status_code < 300:
                    SENT.labels("delivered").inc()
                    return True
                if 400 <= response.status_code < 500 and response.status_code != 429:
                    break  # the receiver refuses it; retrying will not help
            except httpx.HTTPError as exc:
                log.info("webhook attempt %d failed: %s", attempt + 1, type(exc).__name__)
            self.sleep(random.uniform(0, self.base_delay * 2**attempt))  # noqa: S311 - jitter
        SENT.labels("failed").inc()
        log.warning("webhook gave up on alert %s (%s)", event.alert_id, event.event)
        return False

    def _run(self) -> None:
        while True:
            event = self.queue.get()
            if event is None:
                return
            self._deliver(event)
            self.queue.task_done()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop."""
        deadline = time.monotonic() + timeout
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.queue.put(None)
        self._thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self.client.close()
