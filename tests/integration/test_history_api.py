"""``POST /v1/readings/history`` on real PostgreSQL and Redis: years-old readings stored
synchronously (not through the stream), exactly once, with the key, facility and size rules of
/v1/readings, per-reading refusals, and 429 under the facility's history bounds."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgpack
import psycopg
from fixtures.api import Api

from plantstream.api.history import HistoryService
from plantstream.ingest.admission import RateLimiter
from plantstream.model import SignalDef, SignalKind, ValueType
from plantstream.model.signals import UnknownSignalPolicy
from plantstream.store import signal_defs
from plantstream.testing import app_in_thread

URL = "/v1/readings/history"


def _readings(count: int, start: datetime, metric: str = "temperature") -> list[dict[str, Any]]:
    return [
        {
            "device": "m1",
            "metric": metric,
            "ts": (start + timedelta(minutes=i)).isoformat(),
            "value": 20.0 + i,
        }
        for i in range(count)
    ]


def _retention_years(api: Api) -> None:
    """The fixture's settings keep 30 days of raw data: give history room for years."""
    service = HistoryService(api.state)
    service.store.retention_days = 5 * 365
    api.client.app.state.history = service  # type: ignore[attr-defined]


def test_two_years_back_stored_synchronously_once_and_never_streamed(
    api: Api, db: psycopg.Connection
) -> None:
    _retention_years(api)
    key = api.make_key("ingest")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=730)
    body = {"facility": "plant-01", "readings": _readings(50, start)}
    body["readings"].append(
        {"device": "m1", "metric": "no_such", "ts": start.isoformat(), "value": 1}
    )
    answer = api.client.post(URL, json=body, headers=api.headers(key))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "accepted": 50,
        "duplicates": 0,
        "rejected": [
            {"index": 50, "code": "unknown_metric", "message": "unknown metric 'no_such'"}
        ],
    }
    # committed before the answer: readable at once, and rolled up
    assert db.execute("SELECT count(*), min(ts) FROM readings").fetchone() == (50, start)
    assert db.execute("SELECT sum(count) FROM rollup_1h").fetchone() == (50,)
    # not through the stream: nothing for the processor (or detection) to read
    assert all(not api.stream.read(s.shard_id, None, 10).records for s in api.stream.list_shards())
    again = api.client.post(URL, json=body, headers=api.headers(key))
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 50)
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (50,)
    assert db.execute("SELECT sum(count) FROM rollup_1d").fetchone() == (50,)


def test_msgpack_and_the_bounds_of_v1_readings(api: Api, db: psycopg.Connection) -> None:
    _retention_years(api)
    key = api.make_key("ingest")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=400)
    packed = msgpack.packb(
        {
            "facility": "plant-01",
            "readings": [
                {**r, "ts": msgpack.Timestamp.from_datetime(datetime.fromisoformat(r["ts"]))}
                for r in _readings(3, start)
            ],
        }
    )
    answer = api.client.post(
        URL, content=packed, headers={**api.headers(key), "Content-Type": "application/msgpack"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 3
    too_many = {"facility": "plant-01", "readings": _readings(101, start)}  # the fixture's max: 100
    refused = api.client.post(URL, json=too_many, headers=api.headers(key))
    assert (refused.status_code, refused.json()["error"]["code"]) == (413, "batch_too_large")
    future = datetime.now(UTC) + timedelta(hours=1)
    ancient = datetime.now(UTC) - timedelta(days=6 * 365)  # past the 5-year retention here
    mixed = {"facility": "plant-01", "readings": _readings(1, future) + _readings(1, ancient)}
    answer = api.client.post(URL, json=mixed, headers=api.headers(key))
    assert [(r["index"], r["code"]) for r in answer.json()["rejected"]] == [
        (0, "timestamp_in_future"),
        (1, "beyond_retention"),
    ]
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (3,)


def test_keys_roles_and_facilities(api: Api) -> None:
    body = {"facility": "plant-01", "readings": _readings(1, datetime.now(UTC) - timedelta(days=9))}
    assert api.client.post(URL, json=body).status_code == 401
    reader = api.client.post(URL, json=body, headers=api.headers(api.make_key("read")))
    assert (reader.status_code, reader.json()["error"]["code"]) == (403, "forbidden_role")
    other = api.client.post(
        URL, json=body, headers=api.headers(api.make_key("ingest", facility="plant-02"))
    )
    assert (other.status_code, other.json()["error"]["code"]) == (403, "forbidden_facility")
    ok = api.client.post(URL, json=body, headers=api.headers(api.make_key("ingest")))
    assert (ok.status_code, ok.json()["accepted"]) == (200, 1)  # 9 days: past /v1/readings' 7


def test_429_past_the_facility_rate_and_while_its_history_lock_is_held(
    api: Api, db: psycopg.Connection, database_url: str
) -> None:
    service = HistoryService(api.state)
    service.rate = RateLimiter(10.0, burst=20.0)
    api.client.app.state.history = service  # type: ignore[attr-defined]
    key = api.make_key("ingest")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
    body = {"facility": "plant-01", "readings": _readings(20, start)}
    assert api.client.post(URL, json=body, headers=api.headers(key)).status_code == 200
    limited = api.client.post(URL, json=body, headers=api.headers(key))
    assert (limited.status_code, limited.json()["error"]["code"]) == (429, "quota_readings_rate")
    assert float(limited.headers["Retry-After"]) >= 1
    # another facility is not slowed by plant-01's bucket
    other = {"facility": "plant-02", "readings": _readings(20, start)}
    admin = api.make_key("admin", facility=None)
    assert api.client.post(URL, json=other, headers=api.headers(admin)).status_code == 200

    service.rate = RateLimiter(1e6)
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, hashtext('plant-01'))", (0x70736869,))
        busy = api.client.post(
            URL,
            json={"facility": "plant-01", "readings": _readings(5, start)},
            headers=api.headers(key),
        )
        assert (busy.status_code, busy.json()["error"]["code"]) == (429, "history_busy")
        assert "Retry-After" in busy.headers
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (40,)


def test_typed_readings_of_the_facility_s_own_signals(api: Api, db: psycopg.Connection) -> None:
    signal_defs.upsert_signals(
        conn=db,
        facility="plant-01",
        signals=[
            SignalDef("mode", ValueType.STATE, SignalKind.STATE, states=("idle", "run")),
            SignalDef("parts", ValueType.INT64, SignalKind.COUNTER, unit="count"),
            SignalDef("running", ValueType.BOOL, SignalKind.STATE),
        ],
    )
    _retention_years(api)
    at = (datetime.now(UTC) - timedelta(days=100)).replace(microsecond=0)
    readings = [
        {"device": "m1", "metric": "mode", "ts": at.isoformat(), "value": "run"},
        {"device": "m1", "metric": "parts", "ts": at.isoformat(), "value": 2**60 + 1},
        {"device": "m1", "metric": "running", "ts": at.isoformat(), "value": True,
         "quality": "uncertain", "quality_code": 1083441152},
        {"device": "m1", "metric": "mode", "ts": at.isoformat(), "value": "exploded"},
    ]  # fmt: skip
    key = api.make_key("ingest")
    answer = api.client.post(
        URL, json={"facility": "plant-01", "readings": readings}, headers=api.headers(key)
    ).json()
    assert (answer["accepted"], [r["code"] for r in answer["rejected"]]) == (3, ["unknown_state"])
    stored = {
        metric: rest
        for metric, *rest in db.execute(
            "SELECT s.metric, r.value, r.value_int, r.value_text, r.quality, r.quality_code "
            "FROM readings r JOIN sensors s ON s.id = r.sensor_id"
        ).fetchall()
    }
    assert stored["mode"][2] == "run"
    assert stored["parts"][1] == 2**60 + 1
    assert stored["running"] == [1.0, None, None, 1, 1083441152]


def test_history_of_an_unknown_signal_under_register_is_recorded_for_review(
    api: Api, db: psycopg.Connection
) -> None:
    """The register policy holds on the history path as on the live one: a new name is stored
    and listed as unclassified for an admin, never taken unseen."""
    _retention_years(api)
    signal_defs.set_policy(conn=db, facility="plant-01", policy=UnknownSignalPolicy.REGISTER)
    body = {
        "facility": "plant-01",
        "readings": _readings(3, datetime.now(UTC) - timedelta(days=40), metric="coolant_flow"),
    }
    answer = api.client.post(URL, json=body, headers=api.headers(api.make_key("ingest")))
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 3
    assert signal_defs.unclassified(conn=db, facility="plant-01") == ["coolant_flow"]


def test_a_refused_request_gives_its_readings_per_second_back(api: Api, database_url: str) -> None:
    """A batch refused history_busy stored nothing: sending it again is not charged twice."""
    service = HistoryService(api.state)
    service.rate = RateLimiter(1e-3, burst=20.0)  # 20 readings, nothing more for hours
    api.client.app.state.history = service  # type: ignore[attr-defined]
    key = api.make_key("ingest")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
    body = {"facility": "plant-01", "readings": _readings(15, start)}
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, hashtext('plant-01'))", (0x70736869,))
        busy = api.client.post(URL, json=body, headers=api.headers(key))
        assert (busy.status_code, busy.json()["error"]["code"]) == (429, "history_busy")
    again = api.client.post(URL, json=body, headers=api.headers(key))
    assert (again.status_code, again.json()["accepted"]) == (200, 15), again.text


def test_slow_bodies_do_not_hold_the_history_slots_of_the_process(api: Api) -> None:
    """Two clients trickling their bodies (as many as the process' history slots) leave a
    third one's history import answered at once."""
    service = HistoryService(api.state)
    assert service.gate.limit == 2
    api.client.app.state.history = service  # type: ignore[attr-defined]
    key = api.make_key("ingest")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
    payload = json.dumps({"facility": "plant-01", "readings": _readings(3, start)}).encode()
    with app_in_thread(api.client.app, lifespan="off", access_log=False) as url:
        port = int(url.rsplit(":", 1)[1])
        slow = []
        try:
            for _ in range(service.gate.limit):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(
                    b"POST /v1/readings/history HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\n"
                    + f"Authorization: Bearer {key}\r\n".encode()
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload[:10]  # the rest never comes while the third is sent
                )
                slow.append(sock)
            answer = httpx.post(
                url + URL,
                content=payload,
                headers={**api.headers(key), "Content-Type": "application/json"},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == 3
        finally:
            for sock in slow:
                sock.close()
