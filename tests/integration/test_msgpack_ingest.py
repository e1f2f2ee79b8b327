"""The MessagePack batch (``Content-Type: application/msgpack``): the JSON batch's fields and
rules, stored the same, refused with the same codes."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import psycopg
import pytest
from fixtures.api import Api
from fixtures.pipeline import drain, stored_readings

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.ingest import CODECS
from plantstream.model import TimeWindow, now_us
from plantstream.processor import Processor

MSGPACK = {"Content-Type": "application/msgpack"}


def _readings(count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        {
            "device": f"press-{i % 3}",
            "metric": "temperature",
            "ts": msgpack.Timestamp.from_datetime(now - timedelta(seconds=count - i)),
            "value": 20.0 + i,
        }
        for i in range(count)
    ]


def _decode(payload: bytes) -> Any:
    return CODECS.get("msgpack").decode(
        payload, received_us=now_us(), window=TimeWindow(), max_readings=100
    )


def test_a_msgpack_batch_is_stored_like_its_json_twin(
    api: Api,
    db: psycopg.Connection,
    make_processor: Callable[..., Processor],
    database_url: str,
) -> None:
    readings = _readings(30)
    readings[4]["ts"] = "2000-01-01T00:00:00Z"  # RFC 3339 strings work too: this one is old
    readings[5]["metric"] = "temprature"
    body = msgpack.packb({"facility": "plant-01", "readings": readings})
    headers = {**api.headers(api.make_key("ingest")), **MSGPACK}
    answer = api.client.post("/v1/readings", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    result = answer.json()
    assert result["accepted"] == 28
    assert [(r["index"], r["code"]) for r in result["rejected"]] == [
        (4, "timestamp_too_old"),
        (5, "unknown_metric"),
    ]
    gzipped = msgpack.packb({"facility": "plant-01", "readings": _readings(40)[30:]})
    answer = api.client.post(
        "/v1/readings",
        content=gzip.compress(gzipped),
        headers={**headers, "Content-Encoding": "gzip"},
    )
    assert answer.json() == {"accepted": 10, "rejected": []}
    drain(make_processor(database_url, api.stream, None))
    stored = stored_readings(db)
    assert len(stored) == 28 + 10
    assert {v for (_, d, _, _), v in stored.items() if d == "press-0"} >= {20.0, 23.0}


def test_a_repeated_key_is_refused_not_resolved_silently() -> None:
    """MessagePack maps may repeat a key and the decoder keeps the last: refused instead, as
    the JSON batch refuses ``{"value": 1, "value": 999}``."""
    first, second = (msgpack.packb(r) for r in _readings(2))
    assert second[0] == 0x84  # a fixmap of the four fields
    doubled = second[:1].replace(b"\x84", b"\x85") + second[1:] + msgpack.packb("value") + b"\x01"
    head = b"\x82" + msgpack.packb("facility") + msgpack.packb("plant-01")
    head += msgpack.packb("readings") + b"\x92"
    assert _decode(head + first + second).rejected == []
    batch = _decode(head + first + doubled)
    assert [(r.index, r.code) for r in batch.rejected] == [(1, ErrorCode.DUPLICATE_KEY)]
    assert len(batch.readings) == 1
    good = msgpack.packb({"facility": "plant-01", "readings": _readings(2)})
    outer = b"\x83" + good[1:] + b"\xa8facility\xa8plant-02"
    with pytest.raises(InvalidInputError) as refused:
        _decode(outer)
    assert refused.value.code is ErrorCode.DUPLICATE_KEY


def test_a_body_that_is_not_msgpack_or_not_a_batch_is_refused_whole(api: Api) -> None:
    headers = {**api.headers(api.make_key("ingest")), **MSGPACK}
    for body in (b'{"facility": "plant-01"}', msgpack.packb([1, 2]), b"\xc1"):
        answer = api.client.post("/v1/readings", content=body, headers=headers)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_body"
    bad = msgpack.packb({"facility": "plant-01", "readings": [{"device": "x"}, 7]})
    answer = api.client.post("/v1/readings", content=bad, headers=headers)
    assert answer.status_code == 202
    assert [r["code"] for r in answer.json()["rejected"]] == ["invalid_reading"] * 2


def test_the_content_type_selects_the_codec_and_json_stays_the_default() -> None:
    assert CODECS.for_media_type("application/msgpack") == "msgpack"
    assert CODECS.for_media_type("Application/MsgPack; charset=binary") == "msgpack"
    assert CODECS.for_media_type("application/json; charset=utf-8") == "json"
    assert CODECS.for_media_type("") == "json"
    assert CODECS.for_media_type("text/plain") == "json"


def test_a_quality_code_is_a_field_of_its_own_not_a_repeated_key() -> None:
    """The source's raw quality code (an OPC UA StatusCode) rides beside quality: a reading
    with all six fields is taken, and one naming quality_code twice is still refused."""
    reading = {**_readings(1)[0], "quality": "uncertain", "quality_code": 0x40920000}
    head = b"\x82" + msgpack.packb("facility") + msgpack.packb("plant-01")
    head += msgpack.packb("readings") + b"\x91"
    batch = _decode(head + msgpack.packb(reading))
    assert batch.rejected == []
    assert [(r.quality, r.quality_code) for r in batch.readings] == [(1, 0x40920000)]
    packed = msgpack.packb(reading)
    assert packed[0] == 0x86  # a fixmap of six fields
    doubled = b"\x87" + packed[1:] + msgpack.packb("quality_code") + msgpack.packb(7)
    twice = _decode(head + doubled)
    assert [r.code for r in twice.rejected] == [ErrorCode.DUPLICATE_KEY]
