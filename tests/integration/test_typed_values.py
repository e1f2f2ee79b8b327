"""Typed values end to end: int64 beyond 2**53, booleans, states and strings go from the JSON
body through the stream, the processor and PostgreSQL to Redis latest and /v1/series exactly;
conflicts and the source's quality codes are kept; detection never sees a text."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fixtures.api import Api
from fixtures.pipeline import drain

from plantstream.model import (
    DEFAULT_SIGNALS,
    FixedCatalog,
    SignalDef,
    SignalKind,
    TimeWindow,
    UnknownSignalPolicy,
    ValueType,
    now_us,
    parse_batch,
)
from plantstream.processor import Processor
from plantstream.processor.rows import Columns
from plantstream.store.sensors import SensorKey
from plantstream.stream import RedisStream, pack_readings

SIGNALS = {
    **DEFAULT_SIGNALS,
    "parts": SignalDef("parts", ValueType.INT64, SignalKind.COUNTER, unit="count", wrap=2**64 // 2),
    "running": SignalDef("running", ValueType.BOOL, SignalKind.STATE),
    "mode": SignalDef(
        "mode", ValueType.STATE, SignalKind.STATE, states=("idle", "run", "fault|stop")
    ),
    "program": SignalDef("program", ValueType.STRING, SignalKind.STATE, max_length=16),
}
CATALOG = FixedCatalog(SIGNALS)
BIG = 2**53 + 1  # not a float: a double would read it back as 2**53


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _send(
    stream: RedisStream,
    readings: list[dict[str, Any]],
    catalog: FixedCatalog = CATALOG,
    facility: str = "plant-01",
) -> list[tuple[int, str]]:
    """Validate and pack like ingest does (with ``catalog``); return the refusals."""
    body = json.dumps({"facility": facility, "readings": readings}).encode()
    received = now_us()
    batch = parse_batch(
        body, received_us=received, window=TimeWindow(), max_readings=1000, catalog=catalog
    )
    if batch.readings:
        stream.put(pack_readings(batch.facility, received, batch.readings))
    return [(r.index, str(r.code)) for r in batch.rejected]


def _reading(metric: str, value: object, ts: datetime, **extra: object) -> dict[str, Any]:
    return {"device": "m1", "metric": metric, "ts": _iso(ts), "value": value, **extra}


class _Seen:
    """A detection-like sink (no ``typed_values``): records what reaches it."""

    name = "seen"

    def __init__(self) -> None:
        self.metrics: list[str] = []

    def write(self, rows: Columns, keys: dict[int, SensorKey]) -> None:
        self.metrics += [keys[s][2] for s in rows.sensor_id.tolist()]

    def catch_up(self, conn: psycopg.Connection, missed: object) -> None:
        pass


def test_typed_values_round_trip_exactly(
    api: Api,
    db: psycopg.Connection,
    make_processor: Callable[..., Processor],
    database_url: str,
) -> None:
    read = api.make_key("read")
    api.state.catalog = CATALOG  # type: ignore[attr-defined]
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = now - timedelta(seconds=30)
    refused = _send(
        api.stream,
        [
            _reading("parts", BIG, t0),
            _reading("parts", BIG + 2, t0 + timedelta(seconds=1), quality_code=0x80000000),
            _reading("running", True, t0),
            _reading("running", False, t0 + timedelta(seconds=1)),
            _reading("mode", "run", t0),
            _reading("mode", "fault|stop", t0 + timedelta(seconds=1)),
            _reading("program", "O1234 (ä)", t0),
            _reading("temperature", 21.5, t0),
            # refused, each with its code
            _reading("mode", "dancing", t0 + timedelta(seconds=2)),
            _reading("program", "x" * 17, t0 + timedelta(seconds=2)),
            _reading("running", 1, t0 + timedelta(seconds=2)),
            _reading("temperature", "hot", t0 + timedelta(seconds=2)),
            _reading("parts", 2**63, t0 + timedelta(seconds=2)),
            _reading("parts", 1.5, t0 + timedelta(seconds=2)),
            _reading("voltage", 230.0, t0),
            _reading("temperature", 21.0, t0 + timedelta(seconds=2), unit="psi"),
        ],
    )
    assert refused == [
        (8, "unknown_state"),
        (9, "value_too_long"),
        (10, "invalid_reading"),
        (11, "invalid_reading"),
        (12, "value_out_of_range"),
        (13, "invalid_reading"),
        (14, "unknown_metric"),
        (15, "unknown_unit"),
    ]
    seen = _Seen()
    processor = make_processor(database_url, api.stream, api.state.redis, catalog=CATALOG)
    processor.register(seen)
    drain(processor)

    latest = api.client.get(
        "/v1/latest?facility=plant-01&device=m1", headers=api.headers(read)
    ).json()
    by_metric = {v["metric"]: v for v in latest["readings"]}
    assert by_metric["parts"]["value"] == BIG + 2
    assert by_metric["parts"]["value_type"] == "int64"
    assert by_metric["parts"]["quality_code"] == 0x80000000
    assert by_metric["running"]["value"] is False
    assert by_metric["mode"]["value"] == "fault|stop"
    assert by_metric["mode"]["value_type"] == "state"
    assert by_metric["program"]["value"] == "O1234 (ä)"
    assert by_metric["temperature"] == {
        "device": "m1",
        "metric": "temperature",
        "ts": _iso(t0),
        "value": 21.5,
        "unit": "degC",
        "quality": "good",
    }  # a plain double answers exactly as v1 did

    def series(metric: str) -> list[Any]:
        answer = api.client.get(
            "/v1/series",
            params={
                "facility": "plant-01",
                "device": "m1",
                "metric": metric,
                "from": _iso(now - timedelta(minutes=5)),
                "to": _iso(now + timedelta(seconds=1)),
                "step": "raw",
            },
            headers=api.headers(read),
        )
        assert answer.status_code == 200, answer.text
        return [p["value"] for p in answer.json()["points"]]

    assert series("parts") == [BIG, BIG + 2]
    assert series("running") == [True, False]
    assert series("mode") == ["run", "fault|stop"]
    assert series("program") == ["O1234 (ä)"]
    # the numbers reach the detection-like sink; the texts never do
    assert sorted(set(seen.metrics)) == ["parts", "running", "temperature"]

    # a rebuild of Redis from PostgreSQL reads the same typed values back
    api.state.redis.flushdb()
    processor.sinks.sinks[0].catch_up(db, None)
    again = api.client.get(
        "/v1/latest?facility=plant-01&device=m1", headers=api.headers(read)
    ).json()
    assert {v["metric"]: v["value"] for v in again["readings"]} == {
        m: v["value"] for m, v in by_metric.items()
    }


def test_a_repeat_with_another_value_is_a_conflict_kept_for_review(
    api: Api,
    db: psycopg.Connection,
    make_processor: Callable[..., Processor],
    database_url: str,
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    first = [_reading("parts", 10, t0), _reading("mode", "idle", t0)]
    _send(api.stream, [*first, _reading("mode", "run", t0)])  # a conflict inside one batch
    processor = make_processor(database_url, api.stream, api.state.redis, catalog=CATALOG)
    drain(processor)
    _send(api.stream, first)  # a plain duplicate
    drain(processor)
    _send(api.stream, [_reading("parts", 11, t0, quality_code=7)])  # a conflict with the store
    drain(processor)

    stored = db.execute(
        "SELECT s.metric, r.value_int, r.value_text FROM readings r "
        "JOIN sensors s ON s.id = r.sensor_id ORDER BY s.metric"
    ).fetchall()
    assert stored == [("mode", None, "idle"), ("parts", 10, None)]  # the first write wins
    conflicts = db.execute(
        "SELECT s.metric, c.value_int, c.value_text, c.quality_code FROM reading_conflicts c "
        "JOIN sensors s ON s.id = c.sensor_id ORDER BY s.metric"
    ).fetchall()
    assert conflicts == [("mode", None, "run", None), ("parts", 11, None, 7)]
    counters = dict(
        db.execute(
            "SELECT counter, value FROM processor_counters WHERE facility = 'plant-01'"
        ).fetchall()
    )
    assert counters["conflict"] == 2
    assert counters["duplicate"] == 2 + 1 + 1  # conflicts are duplicates too: the books hold
    assert counters["accepted"] == counters["stored"] + counters["duplicate"]


def test_the_quality_code_is_stored_beside_the_quality(
    api: Api,
    db: psycopg.Connection,
    make_processor: Callable[..., Processor],
    database_url: str,
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    refused = _send(
        api.stream,
        [
            _reading("temperature", 20.0, t0, quality="uncertain", quality_code=0x40920000),
            _reading("temperature", 21.0, t0 + timedelta(seconds=1)),
            _reading("temperature", 22.0, t0 + timedelta(seconds=2), quality_code=2**32),
        ],
    )
    assert refused == [(2, "unknown_quality")]
    drain(make_processor(database_url, api.stream, api.state.redis, catalog=CATALOG))
    rows = db.execute("SELECT value, quality, quality_code FROM readings ORDER BY ts").fetchall()
    assert rows == [(20.0, 1, 0x40920000), (21.0, 0, None)]


@pytest.mark.parametrize("policy", [UnknownSignalPolicy.REFUSE, UnknownSignalPolicy.REGISTER])
def test_an_unknown_signal_follows_the_facility_policy(
    api: Api,
    db: psycopg.Connection,
    make_processor: Callable[..., Processor],
    database_url: str,
    policy: UnknownSignalPolicy,
) -> None:
    catalog = FixedCatalog(SIGNALS, policy)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    refused = _send(api.stream, [_reading("voltage", 230.5, t0, unit="V")], catalog)
    drain(make_processor(database_url, api.stream, api.state.redis, catalog=catalog))
    sensors = db.execute("SELECT metric, unit, value_type FROM sensors").fetchall()
    if policy is UnknownSignalPolicy.REFUSE:
        assert refused == [(0, "unknown_metric")]
        assert sensors == []
    else:
        assert refused == []
        assert sensors == [("voltage", "", "double")]
        assert db.execute("SELECT value FROM readings").fetchall() == [(230.5,)]
