"""What ingest does with bodies that are not one plain JSON document: every gzip member is
read (never the first alone), and a body too large gets a 413 the client can read."""

from __future__ import annotations

import gzip
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fixtures.api import Api
from fixtures.pipeline import drain, stored_readings
from prometheus_client import REGISTRY

from plantstream.processor import Processor
from plantstream.testing import app_in_thread, wait_until


def _batch(make_reading: Callable[..., dict[str, Any]], count: int) -> bytes:
    now = datetime.now(UTC).replace(microsecond=0)
    readings = [
        make_reading(ts=(now - timedelta(seconds=count - i)).isoformat(), value=float(i))
        for i in range(count)
    ]
    return json.dumps({"facility": "plant-01", "readings": readings}).encode()


def test_a_two_member_gzip_body_is_stored_whole(
    api: Api,
    db: psycopg.Connection,
    make_reading: Callable[..., dict[str, Any]],
    make_processor: Callable[..., Processor],
    database_url: str,
) -> None:
    """A gzip writer that starts a new member mid-document (RFC 1952 allows any number):
    every reading of the body is stored, not those of the first member alone."""
    document = _batch(make_reading, 40)
    half = len(document) // 2
    body = gzip.compress(document[:half]) + gzip.compress(document[half:])
    answer = api.client.post(
        "/v1/readings",
        content=body,
        headers={**api.headers(api.make_key("ingest")), "Content-Encoding": "gzip"},
    )
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 40, "rejected": []}
    drain(make_processor(database_url, api.stream, None))
    assert len(stored_readings(db)) == 40


def test_whole_body_refusals_are_counted_by_code(api: Api) -> None:
    def refused(code: str) -> float:
        labels = {"code": code}
        return REGISTRY.get_sample_value("plantstream_ingest_requests_refused_total", labels) or 0

    before = refused("invalid_body")
    answer = api.client.post(
        "/v1/readings",
        content=gzip.compress(b"{}") + b"tail",
        headers={**api.headers(api.make_key("ingest")), "Content-Encoding": "gzip"},
    )
    assert answer.json()["error"]["code"] == "invalid_body"
    assert refused("invalid_body") == before + 1


def test_a_client_that_writes_its_whole_body_first_reads_its_413(api: Api) -> None:
    """urllib sends the whole body before it reads the answer: the server reads (and throws
    away) the rest of a too-large body, so the client gets the 413 and its code, not a reset."""
    key = api.make_key("ingest")
    too_big = b" " * (8 * 1024 * 1024)  # past the fixture's 64 KiB limit, within the drain
    with app_in_thread(api.client.app) as url:
        for _ in range(3):  # and the server keeps answering after each
            request = urllib.request.Request(  # noqa: S310 - our own loopback server
                url + "/v1/readings",
                data=too_big,
                headers={**api.headers(key), "Content-Type": "application/json"},
                method="POST",
            )
            try:
                urllib.request.urlopen(request, timeout=30)  # noqa: S310
                raise AssertionError("a too-large body was accepted")
            except urllib.error.HTTPError as refused:
                assert refused.code == 413
                assert json.loads(refused.read())["error"]["code"] == "body_too_large"


def test_a_client_gone_mid_body_is_counted_not_an_unexpected_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway that drops its connection halfway through a body: the request is counted as
    refused ``client_disconnected``, and nothing is logged as an unexpected (500) error."""

    def refused() -> float:
        labels = {"code": "client_disconnected"}
        return REGISTRY.get_sample_value("plantstream_ingest_requests_refused_total", labels) or 0

    before = refused()
    head = (
        "POST /v1/readings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {api.make_key('ingest')}\r\nContent-Length: 4000\r\n\r\n"
    )
    with app_in_thread(api.client.app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(head.encode() + b'{"facility": "plant-01", "readi')
        wait_until(lambda: refused() == before + 1, timeout=10, what="the refusal counted")
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]
