"""Connection-level limits of ``plantstream serve`` hold against hostile clients, on loopback:
a slowloris is closed after the head deadline, one address cannot hold more than its share,
huge or countless headers are refused, and at the total cap health probes are still answered.

Every server here is the real ``plantstream serve ingest`` process with its one web server
configuration; 127.0.0.0/8 gives the clients addresses of their own.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import psycopg
import pytest

from plantstream.errors import ConfigError
from plantstream.local.ports import free_port
from plantstream.runtime.limits import ConnectionLimits
from plantstream.settings import load_settings
from plantstream.store.keys import Role, create_key
from plantstream.testing import (
    SERVER_SECRET,
    plantstream_server,
    server_env,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.integration

PROBE_FROM = "127.0.0.2"  # health probes and metrics come from an address of their own


@contextmanager
def server(database_url: str, redis_url: str, **settings: str) -> Iterator[tuple[str, int]]:
    """``plantstream serve ingest`` with ``settings``: (url, port); stopped with SIGTERM."""
    env = server_env(port=free_port(), database_url=database_url, redis_url=redis_url, **settings)
    with plantstream_server("ingest", env=env) as (url, proc):
        yield url, int(env["PLANTSTREAM_PORT"])
        # SIGTERM drains: connections still held (idle or half-sent) do not keep it alive
        assert stop_process(proc, timeout=15) == 0


def connect(port: int, source: str = "127.0.0.1", first_bytes: bytes = b"") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def ended(sock: socket.socket) -> bool:
    """True once the server has answered or closed this connection (it never sent a request)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def answer(sock: socket.socket, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """The one response the server sends on ``sock`` before closing it: status, JSON body."""
    sock.setblocking(True)
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "the server closed the connection without an answer"
    return int(head.split()[1]), json.loads(body)


def probe(url: str, path: str = "/healthz") -> httpx.Response:
    """A request on a fresh connection from PROBE_FROM, as a load balancer's health check."""
    transport = httpx.HTTPTransport(local_address=PROBE_FROM)
    with httpx.Client(transport=transport, timeout=10, headers={"Connection": "close"}) as c:
        return c.get(url + path)


def refused(url: str, reason: str) -> float:
    prefix = f'plantstream_connections_refused_total{{reason="{reason}"}} '
    lines = probe(url, "/metrics").text.splitlines()
    return sum(float(line.removeprefix(prefix)) for line in lines if line.startswith(prefix))


def test_a_slowloris_is_closed_after_the_head_deadline_and_health_answers_meanwhile(
    database_url: str, redis_url: str
) -> None:
    partial = b"GET /v1/latest?facility=plant-01 HTTP/1.1\r\nHost: slow\r\nX-Slow: "
    with (
        ExitStack() as held,  # still held when the server is stopped
        server(database_url, redis_url, head_timeout_seconds="1") as (url, port),
    ):
        slow = [
            held.enter_context(connect(port, f"127.0.0.{10 + n % 10}", partial)) for n in range(100)
        ]
        quiet = held.enter_context(connect(port, "127.0.0.30"))  # sends nothing at all
        assert probe(url).status_code == 200
        wait_until(
            lambda: all(ended(s) for s in [*slow, quiet]),
            timeout=15,
            what="every connection without a complete head to be closed",
        )
        status, body = answer(slow[0])
        assert status == 408
        assert body["error"]["code"] == "head_timeout"
        assert refused(url, "head_timeout") >= 101
        assert probe(url).status_code == 200
        for n in range(50):
            held.enter_context(connect(port, f"127.0.0.{10 + n % 10}", partial))


def test_one_address_cannot_hold_more_than_its_cap_another_still_gets_in(
    database_url: str, redis_url: str
) -> None:
    with (
        ExitStack() as held,  # still held when the server is stopped
        server(
            database_url,
            redis_url,
            max_connections_per_address="10",
            connection_cap_exempt_ips="127.0.0.12",
        ) as (url, port),
    ):
        flood = [held.enter_context(connect(port, "127.0.0.10")) for _ in range(10)]
        over = held.enter_context(connect(port, "127.0.0.10"))
        status, body = answer(over)  # promptly: no request was even sent
        assert status == 503
        assert body["error"]["code"] == "too_many_connections"
        assert not any(ended(s) for s in flood)

        other = held.enter_context(connect(port, "127.0.0.11"))
        other.sendall(b"GET /healthz HTTP/1.1\r\nHost: other\r\n\r\n")
        assert other.recv(64).startswith(b"HTTP/1.1 200")
        proxy = [held.enter_context(connect(port, "127.0.0.12")) for _ in range(15)]
        assert not any(ended(s) for s in proxy)  # a trusted proxy carries many clients
        assert refused(url, "per_address") >= 1


def test_a_64_kib_header_is_refused_with_431(database_url: str, redis_url: str) -> None:
    with server(database_url, redis_url) as (url, port), connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: big\r\nX-Big: " + b"a" * 65 * 1024)
        sock.sendall(b"\r\n\r\n")
        status, body = answer(sock)
        assert status == 431
        assert body["error"]["code"] == "headers_too_large"
        assert refused(url, "headers_too_large") == 1


def test_a_header_sent_without_end_is_cut_off_at_the_limit(
    database_url: str, redis_url: str
) -> None:
    """The server does not buffer a header that never ends (the 100 MB memory attack)."""
    with server(database_url, redis_url) as (url, port), connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: big\r\nX-Big: ")
        sent, cut_off = 0, False
        while sent < 64 * 2**20 and not cut_off:
            try:
                sock.sendall(b"a" * 2**20)
                sent += 2**20
            except (ConnectionResetError, BrokenPipeError):
                cut_off = True  # the server answered 431 and closed
        assert cut_off
        assert sent < 16 * 2**20
        assert probe(url).status_code == 200


def test_too_many_headers_are_refused_with_431(database_url: str, redis_url: str) -> None:
    fields = b"".join(b"X-Field-%d: 1\r\n" % n for n in range(150))
    with server(database_url, redis_url) as (url, port), connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: many\r\n" + fields + b"\r\n")
        status, body = answer(sock)
        assert status == 431
        assert body["error"]["code"] == "headers_too_large"
        assert refused(url, "too_many_headers") == 1


def test_health_is_answered_at_the_total_cap_idle_or_busy(
    database_url: str, redis_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        key, _ = create_key(
            conn, server_secret=SERVER_SECRET.encode(), role=Role.INGEST, facility="plant-01"
        )
    settings = {
        "max_connections": "20",
        "max_connections_per_address": "0",
        "health_reserve_connections": "2",
        "max_inflight_ingest": "64",
        "body_timeout_seconds": "60",
    }
    trickle = (
        "POST /v1/readings HTTP/1.1\r\nHost: busy\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: 1000\r\n\r\n"
        '{"facility": "plant-01",'
    ).encode()
    with server(database_url, redis_url, **settings) as (url, port), ExitStack() as held:
        idle = [held.enter_context(connect(port, f"127.0.0.{10 + n % 5}")) for n in range(20)]
        assert probe(url).status_code == 200  # the oldest idle connection made room
        wait_until(lambda: ended(idle[0]), timeout=5, what="the oldest idle one to be closed")
        assert refused(url, "evicted") >= 1

        # now every ordinary slot is working on a request whose body trickles in
        for n in range(20):
            held.enter_context(connect(port, f"127.0.0.{20 + n % 5}", trickle))
        wait_until(lambda: all(ended(s) for s in idle), timeout=10, what="idle ones evicted")
        for path in ("/healthz", "/readyz"):
            assert probe(url, path).status_code == 200
        with connect(port, "127.0.0.40") as reserve:
            reserve.sendall(b"GET /v1/latest?facility=plant-01 HTTP/1.1\r\nHost: r\r\n\r\n")
            status, body = answer(reserve)
        assert status == 503
        assert body["error"]["code"] == "too_many_connections"


def test_a_malformed_exempt_address_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match="PLANTSTREAM_CONNECTION_CAP_EXEMPT_IPS"):
        load_settings(connection_cap_exempt_ips="10.0.0.0/16, not-an-address")
    limits = ConnectionLimits.from_settings(
        load_settings(connection_cap_exempt_ips="10.0.0.0/16, 127.0.0.12")
    )
    assert limits.is_exempt("10.0.3.4")
    assert limits.is_exempt("127.0.0.12")
    assert not limits.is_exempt("127.0.0.1")
