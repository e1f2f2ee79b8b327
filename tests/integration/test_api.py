"""The HTTP contract: every status code with its body, key scoping, and the data round trip."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fixtures.api import Api
from fixtures.pipeline import drain

from plantstream.errors import StreamUnavailableError
from plantstream.processor import Processor


def body(readings: list[dict[str, Any]], facility: str = "plant-01") -> dict[str, Any]:
    return {"facility": facility, "readings": readings}


def error_code(response: Any) -> str:
    payload = response.json()
    assert set(payload) == {"error"}
    assert payload["error"]["message"]
    return str(payload["error"]["code"])


def test_accepted_readings_come_back_through_latest_and_series(
    api: Api,
    make_reading: Callable[..., dict],
    make_processor: Callable[..., Processor],
    database_url: str,
) -> None:
    ingest, read = api.make_key("ingest"), api.make_key("read")
    now = datetime.now(UTC).replace(microsecond=0)
    readings = [
        make_reading(ts=(now - timedelta(seconds=60 - i)).isoformat(), value=40.0 + i)
        for i in range(60)
    ]
    answer = api.client.post("/v1/readings", json=body(readings), headers=api.headers(ingest))
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 60, "rejected": []}

    drain(make_processor(database_url, api.stream, api.state.redis))

    latest = api.client.get("/v1/latest?facility=plant-01", headers=api.headers(read)).json()
    assert latest["readings"] == [
        {
            "device": "line-1-cnc-01",
            "metric": "temperature",
            "ts": (now - timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
            "value": 99.0,
            "unit": "degC",
            "quality": "good",
        }
    ]
    query = {
        "facility": "plant-01",
        "device": "line-1-cnc-01",
        "metric": "temperature",
        "from": (now - timedelta(minutes=5)).isoformat(),
        "to": now.isoformat(),
    }
    raw = api.client.get("/v1/series", params=query, headers=api.headers(read)).json()
    assert raw["step"] == "raw"
    assert [p["value"] for p in raw["points"]] == [40.0 + i for i in range(60)]
    minute = api.client.get(
        "/v1/series", params={**query, "step": "1m"}, headers=api.headers(read)
    ).json()
    assert minute["step"] == "1m"
    assert sum(p["count"] for p in minute["points"]) == 60
    assert min(p["min"] for p in minute["points"]) == 40.0
    assert max(p["max"] for p in minute["points"]) == 99.0
    day = api.client.get(
        "/v1/series",
        params={**query, "from": (now - timedelta(days=1)).isoformat()},
        headers=api.headers(read),
    ).json()
    assert day["step"] == "1m"
    week = api.client.get(
        "/v1/series",
        params={**query, "from": (now - timedelta(days=7)).isoformat()},
        headers=api.headers(read),
    ).json()
    assert week["step"] == "1h"
    assert sum(p["count"] for p in week["points"]) == 60
    facilities = api.client.get("/v1/facilities", headers=api.headers(read)).json()
    assert facilities == {
        "facilities": [{"facility": "plant-01", "devices": 1, "sensors": 1, "open_alerts": 0}]
    }


def test_partial_rejects_are_listed_by_index_with_codes(
    api: Api, make_reading: Callable[..., dict]
) -> None:
    key = api.make_key("ingest")
    readings = [make_reading(), make_reading(value="hot"), make_reading(metric="warp")]
    answer = api.client.post("/v1/readings", json=body(readings), headers=api.headers(key))
    assert answer.status_code == 202
    assert answer.json()["accepted"] == 1
    assert [(r["index"], r["code"]) for r in answer.json()["rejected"]] == [
        (1, "invalid_reading"),
        (2, "unknown_metric"),
    ]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"{oops", 400, "invalid_json"),
        (b'{"facility": "plant-01"}', 400, "invalid_body"),
        (b'{"facility": "plant-01", "readings": []}', 400, "empty_batch"),
    ],
)
def test_malformed_bodies(api: Api, payload: bytes, status: int, code: str) -> None:
    key = api.make_key("ingest")
    answer = api.client.post(
        "/v1/readings",
        content=payload,
        headers={**api.headers(key), "Content-Type": "application/json"},
    )
    assert answer.status_code == status
    assert error_code(answer) == code


def test_too_large_bodies_and_batches(api: Api, make_reading: Callable[..., dict]) -> None:
    key = api.make_key("ingest")
    too_many = api.client.post(
        "/v1/readings", json=body([make_reading()] * 101), headers=api.headers(key)
    )
    assert too_many.status_code == 413
    assert error_code(too_many) == "batch_too_large"
    huge = json.dumps(body([make_reading(device="d" * 60)] * 2000)).encode()
    too_big = api.client.post(
        "/v1/readings",
        content=huge,
        headers={**api.headers(key), "Content-Type": "application/json"},
    )
    assert too_big.status_code == 413
    assert error_code(too_big) == "body_too_large"


def test_gzip_bodies_work_and_bombs_are_refused(
    api: Api, make_reading: Callable[..., dict]
) -> None:
    key = api.make_key("ingest")
    headers = {**api.headers(key), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    small = gzip.compress(json.dumps(body([make_reading()])).encode())
    ok = api.client.post("/v1/readings", content=small, headers=headers)
    assert ok.status_code == 202
    bomb = gzip.compress(b" " * (50 * 1024 * 1024))  # 50 MiB of spaces, ~50 KiB gzipped
    assert len(bomb) < 64 * 1024
    refused = api.client.post("/v1/readings", content=bomb, headers=headers)
    assert refused.status_code == 413
    assert error_code(refused) == "body_too_large"
    odd = api.client.post(
        "/v1/readings", content=small, headers={**headers, "Content-Encoding": "br"}
    )
    assert odd.status_code == 415


def test_keys_are_required_and_scoped(api: Api, make_reading: Callable[..., dict]) -> None:
    ingest_a = api.make_key("ingest", "plant-01")
    read_a = api.make_key("read", "plant-01")
    read_b = api.make_key("read", "plant-02")
    admin = api.make_key("admin", None)
    post = lambda key, facility="plant-01": api.client.post(  # noqa: E731
        "/v1/readings",
        json=body([make_reading()], facility),
        headers=api.headers(key) if key else {},
    )
    missing = post(None)
    assert missing.status_code == 401
    assert error_code(missing) == "missing_key"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert error_code(post("ps_0123456789abcdef_wrong")) == "invalid_key"
    assert error_code(post("not-a-key")) == "malformed_key"
    other = post(ingest_a, "plant-02")
    assert other.status_code == 403
    assert error_code(other) == "forbidden_facility"
    read_cannot_write = post(read_a)
    assert read_cannot_write.status_code == 403
    assert error_code(read_cannot_write) == "forbidden_role"
    assert post(admin, "plant-02").status_code == 202

    latest = lambda key, facility: api.client.get(  # noqa: E731
        f"/v1/latest?facility={facility}", headers=api.headers(key)
    )
    assert latest(read_a, "plant-01").status_code == 200
    assert latest(read_b, "plant-01").status_code == 403
    assert latest(ingest_a, "plant-01").status_code == 403  # ingest keys cannot read
    assert latest(admin, "plant-01").status_code == 200
    # X-API-Key works too
    assert api.client.get("/v1/facilities", headers={"X-API-Key": read_a}).status_code == 200


def test_revoked_and_expired_keys_stop_working(
    api: Api, db: psycopg.Connection, make_reading: Callable[..., dict]
) -> None:
    from plantstream.store.keys import parse_key, revoke_key

    key = api.make_key("ingest")
    expired = api.make_key("ingest", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    ok = api.client.post("/v1/readings", json=body([make_reading()]), headers=api.headers(key))
    assert ok.status_code == 202
    assert revoke_key(db, parse_key(key)[0])
    revoked = api.client.post("/v1/readings", json=body([make_reading()]), headers=api.headers(key))
    assert revoked.status_code == 401
    assert error_code(revoked) == "revoked_key"
    late = api.client.post(
        "/v1/readings", json=body([make_reading()]), headers=api.headers(expired)
    )
    assert error_code(late) == "expired_key"


def test_stream_trouble_answers_429_or_503_and_accepts_nothing(
    api: Api, make_reading: Callable[..., dict]
) -> None:
    key = api.make_key("ingest")

    class DownStream:
        name = "down"

        def put(self, entries: object) -> list[str]:
            raise StreamUnavailableError("connection refused")

        def list_shards(self) -> list[object]:
            raise StreamUnavailableError("connection refused")

    api.state.stream = DownStream()  # type: ignore[assignment]
    answer = api.client.post("/v1/readings", json=body([make_reading()]), headers=api.headers(key))
    assert answer.status_code == 503
    assert error_code(answer) == "stream_unavailable"
    assert api.client.get("/readyz").status_code == 503
    assert api.client.get("/readyz").json()["checks"]["stream"].startswith("unavailable")

    from plantstream.api.state import RateLimiter

    api.state.limiter = RateLimiter(0.5)  # one request, then wait
    api.client.post("/v1/readings", json=body([make_reading()]), headers=api.headers(key))
    limited = api.client.post("/v1/readings", json=body([make_reading()]), headers=api.headers(key))
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1


def test_alerts_list_and_acknowledge(api: Api, db: psycopg.Connection) -> None:
    read_a, read_b = api.make_key("read", "plant-01"), api.make_key("read", "plant-02")
    (alert_id,) = db.execute(
        "INSERT INTO alerts (facility, device, metric, detector, severity, message, opened_at, "
        "last_seen_at) VALUES ('plant-01', 'm1', 'temperature', 'limit', 'critical', "
        "'too hot', now(), now()) RETURNING id"
    ).fetchone()
    listed = api.client.get("/v1/alerts?facility=plant-01&state=open", headers=api.headers(read_a))
    assert [a["id"] for a in listed.json()["alerts"]] == [alert_id]
    hidden = api.client.post(f"/v1/alerts/{alert_id}/ack", headers=api.headers(read_b))
    assert hidden.status_code == 404
    acked = api.client.post(f"/v1/alerts/{alert_id}/ack", headers=api.headers(read_a))
    assert acked.status_code == 200
    assert acked.json()["state"] == "acknowledged"
    assert acked.json()["acknowledged_by"]
    again = api.client.post(f"/v1/alerts/{alert_id}/ack", headers=api.headers(read_a))
    assert again.json()["acknowledged_at"] == acked.json()["acknowledged_at"]
    assert api.client.get(
        "/v1/alerts?facility=plant-01&state=open", headers=api.headers(read_a)
    ).json() == {"alerts": []}
    missing = api.client.post("/v1/alerts/999999/ack", headers=api.headers(read_a))
    assert missing.status_code == 404
    assert error_code(missing) == "not_found"


def test_bad_query_parameters_get_codes(api: Api) -> None:
    read = api.make_key("read")
    base = {"facility": "plant-01", "device": "m1", "metric": "temperature"}
    bad_time = api.client.get(
        "/v1/series", params={**base, "from": "yesterday"}, headers=api.headers(read)
    )
    assert bad_time.status_code == 400
    assert error_code(bad_time) == "invalid_time"
    bad_metric = api.client.get(
        "/v1/series", params={**base, "metric": "warp"}, headers=api.headers(read)
    )
    assert error_code(bad_metric) == "unknown_metric"
    missing = api.client.get("/v1/series?facility=plant-01", headers=api.headers(read))
    assert missing.status_code == 400
    assert error_code(missing) == "invalid_request"
    bad_id = api.client.get("/v1/latest?facility=../etc", headers=api.headers(read))
    assert error_code(bad_id) == "invalid_id"


def test_health_metrics_and_openapi(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok", "stream": "ok"}
    metrics = api.client.get("/metrics")
    assert "plantstream_ingest_readings" in metrics.text
    spec = api.client.get("/openapi.json").json()
    assert {
        "/v1/readings",
        "/v1/latest",
        "/v1/series",
        "/v1/alerts",
        "/v1/alerts/{alert_id}/ack",
        "/v1/facilities",
    } <= set(spec["paths"])
    schema = spec["paths"]["/v1/readings"]["post"]["requestBody"]["content"]["application/json"]
    assert "schema" in schema
    unknown = api.client.get("/v2/nothing")
    assert unknown.status_code == 404
    assert error_code(unknown) == "not_found"


def test_a_day_of_late_data_from_a_gateway_that_was_offline(
    api: Api,
    make_processor: Callable[..., Processor],
    database_url: str,
    db: psycopg.Connection,
) -> None:
    from fixtures.pipeline import assert_books_balance, assert_rollups_match_raw, counters

    key = api.make_key("ingest")
    day_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    for batch in range(20):  # 2,000 readings, one a minute from 36 to 3 hours ago, in order
        readings = [
            {
                "device": "press-1",
                "metric": "pressure",
                "value": 100.0 + i % 13,
                "ts": (
                    day_ago - timedelta(hours=12) + timedelta(minutes=batch * 100 + i)
                ).isoformat(),
            }
            for i in range(100)
        ]
        answer = api.client.post("/v1/readings", json=body(readings), headers=api.headers(key))
        assert answer.json() == {"accepted": 100, "rejected": []}
    drain(make_processor(database_url, api.stream, api.state.redis))
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (2000,)
    assert counters(db)[("plant-01", "late")] == 2000
    assert_rollups_match_raw(db)
    assert_books_balance(db)
    partitions = db.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass"
    ).fetchone()
    assert partitions is not None
    assert partitions[0] >= 2  # the late days got their partitions on the fly
