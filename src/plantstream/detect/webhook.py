"""Alert notifications to a webhook: HMAC-signed JSON, retried with backoff, never blocking.

Events go into a bounded queue drained by a background thread; a full queue drops the
oldest event (counted) rather than slowing the processor. The receiver verifies
``X-Plantstream-Signature: sha256=<hex HMAC of the body with the shared secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import random
import threading
import time
from collections.abc import Callable

import httpx
import orjson
from prometheus_client import Counter

from plantstream.detect.alerts import AlertEvent

log = logging.getLogger(__name__)

SENT = Counter("plantstream_webhook_events", "Alert events sent to the webhook.", ["outcome"])


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


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
    ) -> None:
        self.url = url
        self.secret = secret
        self.attempts = attempts
        self.base_delay = base_delay
        self.client = client or httpx.Client(timeout=10.0)
        self.sleep = sleep
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
        headers = {
            "Content-Type": "application/json",
            "X-Plantstream-Signature": signature(self.secret, body),
            "X-Plantstream-Event": event.event,
        }
        for attempt in range(self.attempts):
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
