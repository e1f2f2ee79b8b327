"""A client that trickles its body, or a crowd of them, cannot take ingest down: the trickler is
answered 408 once its time is up, and while the ingest slots are full the others get an
immediate 429 with Retry-After instead of waiting in an unbounded queue."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fixtures.browser import LiveServer

from plantstream.api.state import InflightGate


@contextmanager
def trickling_client(url: str, key: str, body: bytes) -> Iterator[socket.socket]:
    """A connection that has sent its headers and the first bytes of ``body``, then stalls."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    head = (
        "POST /v1/readings HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    try:
        sock.sendall(head.encode() + body[:10])
        yield sock
    finally:
        sock.close()


def read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of the one response that arrives on ``sock``."""
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(body) >= length:
                return int(head.split()[1]), json.loads(body[:length])
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {data!r}"
        data += chunk


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    idle = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        idle.wait(0.005)


def pushed_back(url: str, code: str) -> float:
    """The server's own count of ingest requests pushed back with ``code``."""
    prefix = f'plantstream_ingest_pushed_back_total{{code="{code}"}} '
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return sum(float(line.removeprefix(prefix)) for line in lines if line.startswith(prefix))


def test_a_trickling_body_gets_408_and_a_full_server_answers_429(
    live_server: LiveServer, make_reading: Callable[..., dict[str, Any]]
) -> None:
    api = live_server.api
    api.state.settings = api.state.settings.model_copy(update={"body_timeout_seconds": 1.0})
    api.state.ingest_gate = InflightGate(1)
    key = api.make_key("ingest")
    body = json.dumps({"facility": "plant-01", "readings": [make_reading()]}).encode()
    headers = {**api.headers(key), "Content-Type": "application/json"}
    overloaded_before = pushed_back(live_server.url, "overloaded")

    with trickling_client(live_server.url, key, body) as slow:
        wait_until(lambda: api.state.ingest_gate.inside == 1, "the trickler holds the slot")
        crowded = httpx.post(f"{live_server.url}/v1/readings", content=body, headers=headers)
        assert crowded.status_code == 429
        assert crowded.json()["error"]["code"] == "overloaded"
        assert int(crowded.headers["Retry-After"]) >= 1
        assert pushed_back(live_server.url, "overloaded") == overloaded_before + 1

        status, answer = read_response(slow)
        assert status == 408
        assert answer["error"]["code"] == "body_timeout"

    wait_until(lambda: api.state.ingest_gate.inside == 0, "the slot is free again")
    retried = httpx.post(f"{live_server.url}/v1/readings", content=body, headers=headers)
    assert retried.status_code == 202
    assert retried.json()["accepted"] == 1
