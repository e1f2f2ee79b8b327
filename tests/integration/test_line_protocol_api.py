"""``/api/v2/write`` and ``/write`` on a real socket: the official ``influxdb-client`` library
writes to plantstream unchanged, and every bad request gets InfluxDB's answer with our code."""

from __future__ import annotations

import base64
import gzip
import time
from collections.abc import Callable

import httpx
import psycopg
import pytest
from fixtures.browser import LiveServer
from fixtures.pipeline import drain, stored_readings
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from plantstream.processor import Processor

NOW_S = int(time.time()) - 60


def test_the_official_client_writes_points_and_lines_that_are_stored(
    live_server: LiveServer,
    make_processor: Callable[..., Processor],
    database_url: str,
    db: psycopg.Connection,
) -> None:
    api = live_server.api
    key = api.make_key("ingest")
    with InfluxDBClient(url=live_server.url, token=key, org="any", enable_gzip=True) as client:
        writer = client.write_api(write_options=SYNCHRONOUS)
        points = [
            Point("cnc").tag("device", "press-1").field("temperature", 40.0 + i)
            .field("spindle_speed", 1000 + i).time(NOW_S + i, WritePrecision.S)
            for i in range(10)
        ]  # fmt: skip
        writer.write(bucket="plant-01", record=points, write_precision=WritePrecision.S)
        writer.write(
            bucket="plant-01",
            record=[f"cnc,machine=press-2 humidity=55 {NOW_S * 1000}"],
            write_precision=WritePrecision.MS,
        )
    drain(make_processor(database_url, api.stream, api.state.redis))
    stored = stored_readings(db)
    assert len(stored) == 21
    us = NOW_S * 1_000_000
    assert stored[("plant-01", "press-1", "temperature", us + 9_000_000)] == 49.0
    assert stored[("plant-01", "press-1", "spindle_speed", us)] == 1000.0
    assert stored[("plant-01", "press-2", "humidity", us)] == 55.0


def test_a_bad_line_is_refused_with_its_number_and_nothing_is_stored(
    live_server: LiveServer,
    make_processor: Callable[..., Processor],
    database_url: str,
    db: psycopg.Connection,
) -> None:
    api = live_server.api
    key = api.make_key("ingest")
    with InfluxDBClient(url=live_server.url, token=key, org="any") as client:
        writer = client.write_api(write_options=SYNCHRONOUS)
        with pytest.raises(ApiException) as refused:
            writer.write(bucket="plant-01", record="m,device=d temperature=1\nm,device=d oops\n")
    assert refused.value.status == 400
    answer = httpx.Response(400, content=refused.value.body).json()
    assert answer["line"] == 2
    assert answer["code"] == "invalid"
    assert answer["error"]["code"] == "invalid_line_protocol"
    assert "unable to parse line 2: invalid field format" in answer["message"]
    drain(make_processor(database_url, api.stream, api.state.redis))
    assert stored_readings(db) == {}


def test_a_partial_write_names_each_refused_field_and_stores_the_rest(
    live_server: LiveServer,
    make_processor: Callable[..., Processor],
    database_url: str,
    db: psycopg.Connection,
) -> None:
    api = live_server.api
    headers = {"Authorization": f"Bearer {api.make_key('ingest')}"}
    body = f'm,device=d temperature=1 {NOW_S}\nm,device=d state="on",humidity=2 {NOW_S}\n'
    answer = httpx.post(
        f"{live_server.url}/api/v2/write?bucket=plant-01&org=o&precision=s",
        content=gzip.compress(body.encode()),
        headers={**headers, "Content-Encoding": "gzip"},
    )
    assert answer.status_code == 400
    shape = answer.json()
    assert shape["accepted"] == 2
    assert shape["line"] == 2
    assert shape["rejected"] == [
        {"line": 2, "field": "state", "code": "unknown_metric",
         "reason": shape["rejected"][0]["reason"]}
    ]  # fmt: skip
    assert shape["error"]["code"] == "unknown_metric"
    drain(make_processor(database_url, api.stream, api.state.redis))
    assert sorted(m for (_, _, m, _) in stored_readings(db)) == ["humidity", "temperature"]


def test_keys_and_facilities_as_influx_clients_send_them(live_server: LiveServer) -> None:
    api = live_server.api
    key, other, reader = (
        api.make_key("ingest"),
        api.make_key("ingest", "plant-02"),
        api.make_key("read"),
    )
    line = f"m,device=d temperature=1 {NOW_S}"
    url = live_server.url

    def post(path: str, auth: str | None) -> httpx.Response:
        headers = {"Authorization": auth} if auth else {}
        return httpx.post(f"{url}{path}", content=line, headers=headers)

    assert post("/api/v2/write?bucket=plant-01&precision=s", f"Token {key}").status_code == 204
    basic = base64.b64encode(f"user:{key}".encode()).decode()
    assert post("/write?db=plant-01&precision=s", f"Basic {basic}").status_code == 204
    assert post("/write?precision=s", f"Token {key}").status_code == 204  # the key's facility
    for path, auth, status, code in [
        ("/api/v2/write?bucket=plant-01&precision=s", None, 401, "missing_key"),
        ("/api/v2/write?bucket=plant-01&precision=s", "Digest x", 401, "missing_key"),
        ("/api/v2/write?bucket=plant-01&precision=s", "Token ps_nope", 401, "malformed_key"),
        ("/api/v2/write?bucket=plant-01&precision=s", "Basic !!", 401, "malformed_key"),
        ("/api/v2/write?bucket=plant-01&precision=s", f"Token {other}", 403, "forbidden_facility"),
        ("/api/v2/write?bucket=plant-01&precision=s", f"Token {reader}", 403, "forbidden_role"),
        ("/api/v2/write?bucket=plant-01&precision=d", f"Token {key}", 400, "invalid_request"),
        ("/api/v2/write?bucket=a%20b&precision=s", f"Token {key}", 400, "invalid_id"),
    ]:
        answer = post(path, auth)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), path
