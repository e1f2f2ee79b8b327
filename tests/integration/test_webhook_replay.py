"""The alert webhook signs id + timestamp + body (Standard Webhooks headers), so a receiver
that checks with ``verify`` refuses a captured delivery sent again."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import httpx
import pytest

from plantstream.detect.alerts import AlertEvent
from plantstream.detect.webhook import WebhookNotifier, verify
from plantstream.errors import InvalidInputError

SECRET = b"s3cret"
NOW = 1_790_000_000.0


class Receiver(BaseHTTPRequestHandler):
    """A receiver as the docs tell one to write it: verify, remember ids, refuse the rest."""

    seen_ids: ClassVar[set[str]] = set()
    taken: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    refused: ClassVar[list[str]] = []
    fail_first: ClassVar[int] = 0
    now: ClassVar[float] = NOW

    @classmethod
    def seen(cls, msg_id: str) -> bool:
        if msg_id in cls.seen_ids:
            return True
        cls.seen_ids.add(msg_id)
        return False

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = dict(self.headers)
        if Receiver.fail_first > 0:
            Receiver.fail_first -= 1
            Receiver.taken.append((headers, body))
            self.send_response(503)
            self.end_headers()
            return
        try:
            verify(SECRET, headers, body, seen=Receiver.seen, now=Receiver.now)
        except InvalidInputError as refused:
            Receiver.refused.append(str(refused.code))
            self.send_response(refused.status)
        else:
            Receiver.taken.append((headers, body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.seen_ids, Receiver.taken, Receiver.refused = set(), [], []
    Receiver.fail_first, Receiver.now = 1, NOW
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


def _event() -> AlertEvent:
    return AlertEvent(
        event="opened",
        alert_id=41,
        facility="plant-01",
        device="line-1-oven-01",
        metric="temperature",
        kind="overheating",
        severity="critical",
        message="too hot",
        at_us=int(NOW * 1e6),
        details={},
    )


def test_a_replayed_delivery_is_refused(receiver: str) -> None:
    ticks = iter(range(int(NOW), int(NOW) + 100))
    notifier = WebhookNotifier(
        receiver, SECRET, sleep=lambda _: None, clock=lambda: float(next(ticks))
    )
    notifier.notify([_event()])
    notifier.close(timeout=10)

    # the first attempt got a 503 and was retried: same id, a fresh timestamp, both signed
    (first, _), (second, body) = Receiver.taken
    assert first["webhook-id"] == second["webhook-id"] == "alert_41_opened"
    assert int(second["webhook-timestamp"]) > int(first["webhook-timestamp"])
    assert second["webhook-signature"].startswith("v1,")
    legacy = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert second["X-Plantstream-Signature"] == legacy  # receivers of older versions

    def send(headers: dict[str, str], content: bytes = body) -> int:
        wanted = ("webhook-id", "webhook-timestamp", "webhook-signature", "Content-Type")
        return httpx.post(
            receiver, content=content, headers={k: headers[k] for k in wanted}
        ).status_code

    assert send(second) == 409  # the very same delivery again: its id was seen
    assert send({**second, "webhook-id": "alert_41_resolved"}) == 401  # id is signed
    assert send({**second, "webhook-timestamp": str(int(NOW) + 50)}) == 401  # so is the time
    assert send(second, body.replace(b"too hot", b"all fine")) == 401  # and the body
    Receiver.seen_ids.clear()  # a receiver that forgot its ids still refuses an old delivery
    Receiver.now = NOW + 3600
    assert send(second) == 401
    assert Receiver.refused == ["replayed_event"] + ["invalid_signature"] * 4
