"""The shared data model refuses each class of bad input with its own code."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from plantstream.errors import InvalidInputError
from plantstream.model import RejectCode, TimeWindow, now_us, parse_batch, to_epoch_us

WINDOW = TimeWindow()


def parse(body: bytes | dict[str, Any], max_readings: int = 100):  # type: ignore[no-untyped-def]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_batch(raw, received_us=now_us(), window=WINDOW, max_readings=max_readings)


def one(reading: dict[str, Any]) -> RejectCode | None:
    batch = parse({"facility": "plant-01", "readings": [reading]})
    return batch.rejected[0].code if batch.rejected else None


def test_valid_batch_is_accepted_in_canonical_units(make_reading: Callable[..., dict]) -> None:
    batch = parse(
        {
            "facility": "plant-01",
            "readings": [
                make_reading(value=212.0, unit="degF"),
                make_reading(metric="pressure", value=250.0, unit="kPa"),
                make_reading(metric="vibration_rms", value=1.0, unit=None),
            ],
        }
    )
    assert batch.facility == "plant-01"
    assert batch.rejected == []
    assert [round(r.value, 6) for r in batch.readings] == [100.0, 2.5, 1.0]
    assert [r.metric for r in batch.readings] == ["temperature", "pressure", "vibration_rms"]


def test_timestamps_keep_microseconds_and_offsets(make_reading: Callable[..., dict]) -> None:
    ts = datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=1)
    local = ts.astimezone(__import__("datetime").timezone(timedelta(hours=5, minutes=30)))
    batch = parse({"facility": "f", "readings": [make_reading(ts=local.isoformat())]})
    assert batch.readings[0].ts_us == to_epoch_us(ts)


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"device": ""}, RejectCode.INVALID_ID),
        ({"device": "pump;DROP TABLE readings"}, RejectCode.INVALID_ID),
        ({"device": "pump\u0000"}, RejectCode.INVALID_ID),
        ({"device": "pump\n"}, RejectCode.INVALID_ID),
        ({"device": "pumр-1"}, RejectCode.INVALID_ID),  # Cyrillic look-alike
        ({"device": "x" * 65}, RejectCode.INVALID_ID),
        ({"metric": "temprature"}, RejectCode.UNKNOWN_METRIC),
        ({"unit": "bar"}, RejectCode.UNKNOWN_UNIT),
        ({"value": 5000.0}, RejectCode.VALUE_OUT_OF_RANGE),
        ({"value": "42"}, RejectCode.INVALID_READING),
        ({"value": None}, RejectCode.INVALID_READING),
        ({"value": True}, RejectCode.INVALID_READING),
        ({"quality": "excellent"}, RejectCode.UNKNOWN_QUALITY),
        ({"ts": "2026-01-01T00:00:00"}, RejectCode.TIMESTAMP_WITHOUT_OFFSET),
        ({"ts": "yesterday"}, RejectCode.INVALID_READING),
        ({"ts": 1700000000}, RejectCode.INVALID_READING),
        ({"extra": 1}, RejectCode.INVALID_READING),
    ],
)
def test_each_bad_reading_has_its_code(
    make_reading: Callable[..., dict], override: dict[str, Any], code: RejectCode
) -> None:
    assert one(make_reading(**override)) == code


def test_timestamps_outside_the_window_are_refused(make_reading: Callable[..., dict]) -> None:
    now = datetime.now(UTC)
    old = make_reading(ts=(now - timedelta(days=8)).isoformat())
    future = make_reading(ts=(now + timedelta(minutes=11)).isoformat())
    near_future = make_reading(ts=(now + timedelta(minutes=9)).isoformat())
    assert one(old) == RejectCode.TIMESTAMP_TOO_OLD
    assert one(future) == RejectCode.TIMESTAMP_IN_FUTURE
    assert one(near_future) is None


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"])
def test_non_finite_numbers_are_refused(literal: bytes) -> None:
    ts = datetime.now(UTC).isoformat().encode()
    body = (
        b'{"facility":"f","readings":[{"device":"d","metric":"temperature","ts":"'
        + ts
        + b'","value":'
        + literal
        + b"}]}"
    )
    try:
        batch = parse(body)
    except InvalidInputError as exc:
        assert exc.code == RejectCode.INVALID_JSON
    else:  # a reading-level refusal is as good as a body-level one, never an acceptance
        assert batch.readings == []
        assert batch.rejected[0].code == RejectCode.INVALID_READING


def test_negative_zero_is_an_ordinary_zero(make_reading: Callable[..., dict]) -> None:
    batch = parse(
        {
            "facility": "f",
            "readings": [make_reading(metric="vibration_rms", value=-0.0, unit="mm/s")],
        }
    )
    assert batch.readings[0].value == 0.0
    assert str(batch.readings[0].value) == "0.0"


def test_good_readings_survive_next_to_bad_ones(make_reading: Callable[..., dict]) -> None:
    batch = parse(
        {"facility": "f", "readings": [make_reading(), make_reading(value="x"), make_reading()]}
    )
    assert len(batch.readings) == 2
    assert [(r.index, r.code) for r in batch.rejected] == [(1, RejectCode.INVALID_READING)]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", RejectCode.INVALID_JSON),
        (b'{"facility": "f", "readings": [', RejectCode.INVALID_JSON),
        (b"[]", RejectCode.INVALID_BODY),
        (b'{"facility": "f"}', RejectCode.INVALID_BODY),
        (b'{"facility": "f", "readings": {}}', RejectCode.INVALID_BODY),
        (b'{"facility": "../etc", "readings": []}', RejectCode.INVALID_ID),
        (b'{"facility": "f", "readings": []}', RejectCode.EMPTY_BATCH),
    ],
)
def test_malformed_bodies_are_refused_whole(body: bytes, code: RejectCode) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse(body)
    assert caught.value.code == code


def test_oversize_batches_are_refused(make_reading: Callable[..., dict]) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse({"facility": "f", "readings": [make_reading()] * 11}, max_readings=10)
    assert caught.value.code == RejectCode.BATCH_TOO_LARGE


def test_deeply_nested_bodies_do_not_crash() -> None:
    body = b'{"facility": "f", "readings": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    with pytest.raises(InvalidInputError) as caught:
        parse(body)
    assert caught.value.code == RejectCode.INVALID_JSON
    assert "nested" in caught.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5e-324", 5e-324),
        ("1e-300", 1e-300),
        ("-0.0", 0.0),
        ("1199.9999999999998", 1199.9999999999998),
    ],
)
def test_tiny_and_boundary_numbers_are_kept_exactly(
    make_reading: Callable[..., dict], value: str, expected: float
) -> None:
    reading = json.dumps(make_reading(value=0.0)).replace('"value": 0.0', f'"value": {value}')
    body = ('{"facility": "plant-01", "readings": [' + reading + "]}").encode()
    batch = parse_batch(body, received_us=now_us(), window=TimeWindow(), max_readings=10)
    assert [r.value for r in batch.readings] == [expected]


def test_odd_but_valid_offsets_land_on_the_right_instant() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    local = now.astimezone(timezone(timedelta(hours=5, minutes=45)))  # Nepal
    far = now.astimezone(timezone(timedelta(hours=-23, minutes=-59)))
    readings = [
        {"device": "m1", "metric": "temperature", "ts": t.isoformat(), "value": 1.0}
        for t in (local, far)
    ]
    body = json.dumps({"facility": "plant-01", "readings": readings}).encode()
    batch = parse_batch(body, received_us=now_us(), window=TimeWindow(), max_readings=10)
    assert [r.ts_us for r in batch.readings] == [to_epoch_us(now)] * 2


def test_a_key_name_inside_a_string_is_not_a_repeat(make_reading: Callable[..., dict]) -> None:
    """The cheap repeat check may suspect a body; the exact one must then clear it."""
    body = json.dumps(
        {"facility": "plant-01", "readings": [make_reading(device="value"), make_reading()]}
    ).encode()
    batch = parse_batch(body, received_us=now_us(), window=TimeWindow(), max_readings=10)
    assert batch.rejected == []
    assert len(batch.readings) == 2
