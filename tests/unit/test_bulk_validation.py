"""A batch is judged a column at a time when every reading is the ordinary kind; the verdict
must be exactly the reading-by-reading one (the same readings, the same refusals and reasons),
whatever mix of ordinary and unusual readings a body holds."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from plantstream.model import RejectCode, TimeWindow, parse_batch
from plantstream.model.readings import (
    DEFAULT_CATALOG,
    ReadingIn,
    Reject,
    _decode_body,
    validate_batch,
    validate_each,
)

RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RECEIVED_US = int(RECEIVED.timestamp()) * 1_000_000
WINDOW = TimeWindow()
PLUS_TWO = timezone(timedelta(hours=2))


def _stamp(offset: timedelta, tz: timezone | None = UTC) -> str:
    at = (RECEIVED + offset).astimezone(tz) if tz is not None else RECEIVED + offset
    text = at.isoformat()
    return text if tz is not None else text.replace("+00:00", "")


# (what it is, a reading of that kind from a number 0..1): ordinary first, then the unusual
KINDS: dict[str, object] = {
    "plain": lambda x: {"value": 20.0 + x},
    "own_unit": lambda x: {"value": 20.0 + x, "unit": "degC"},
    "null_unit": lambda x: {"value": 20.0 + x, "unit": None},
    "quality": lambda x: {"value": x, "quality": "uncertain" if x < 0.5 else "bad"},
    "good": lambda x: {"value": x, "quality": "good"},
    "negative_zero": lambda x: {"value": -0.0},
    "at_low": lambda x: {"value": -60.0},
    "at_high": lambda x: {"value": 1200.0},
    "offset": lambda x: {"value": x, "ts": _stamp(timedelta(seconds=-x * 60), PLUS_TWO)},
    "micros": lambda x: {"value": x, "ts": _stamp(timedelta(microseconds=int(x * 999_999)))},
    "pressure": lambda x: {"metric": "pressure", "value": 1.0 + x},
    "converted_unit": lambda x: {"value": 70.0 + x, "unit": "degF"},
    "foreign_unit": lambda x: {"value": x, "unit": "bar"},
    "integer": lambda x: {"value": int(x * 10)},
    "boolean": lambda x: {"value": x < 0.5},
    "text": lambda x: {"value": "hot"},
    "too_low": lambda x: {"value": -61.0 - x},
    "too_high": lambda x: {"value": 1e300},
    "quality_code": lambda x: {"value": x, "quality_code": 192},
    "bad_quality": lambda x: {"value": x, "quality": "great"},
    "unknown_metric": lambda x: {"metric": "colour", "value": x},
    "counter": lambda x: {"metric": "production_count", "value": 3.0},
    "bad_device": lambda x: {"device": "-pump", "value": x},
    "naive_ts": lambda x: {"value": x, "ts": _stamp(timedelta(seconds=-1), None)},
    "too_old": lambda x: {"value": x, "ts": _stamp(-timedelta(days=7, seconds=1 + x))},
    "oldest": lambda x: {"value": x, "ts": _stamp(-timedelta(days=7))},
    "just_too_old": lambda x: {"value": x, "ts": _stamp(-timedelta(days=7, microseconds=1))},
    "just_in_future": lambda x: {"value": x, "ts": _stamp(timedelta(seconds=600, microseconds=1))},
    "just_too_high": lambda x: {"value": math.nextafter(1200.0, math.inf)},
    "just_too_low": lambda x: {"value": math.nextafter(-60.0, -math.inf)},
    "nearly_too_low": lambda x: {"value": math.nextafter(-60.0, math.inf)},
    "in_future": lambda x: {"value": x, "ts": _stamp(timedelta(seconds=601 + x))},
    "latest": lambda x: {"value": x, "ts": _stamp(timedelta(seconds=600))},
}
# the kinds the column-wise check takes whole (the others send a batch reading by reading)
ORDINARY = [
    "plain",
    "own_unit",
    "null_unit",
    "quality",
    "good",
    "negative_zero",
    "at_low",
    "at_high",
    "offset",
    "micros",
    "pressure",
    "oldest",
    "latest",
]


def _reading(kind: str, x: float, device: int) -> dict[str, object]:
    reading: dict[str, object] = {
        "device": f"pump-{device}",
        "metric": "temperature",
        "ts": _stamp(timedelta(seconds=-x * 3600)),
    }
    reading.update(KINDS[kind](x))  # type: ignore[operator]
    return reading


def _one_by_one(
    facility: str, items: list[ReadingIn | Reject]
) -> tuple[list[object], list[Reject]]:
    """The reading-by-reading verdict (the reference the bulk check must agree with)."""
    batch = validate_each(facility, items, RECEIVED_US, WINDOW, DEFAULT_CATALOG)
    return list(batch.readings), list(batch.rejected)


def _rows(kinds: list[str]) -> st.SearchStrategy[list[tuple[str, float, int]]]:
    return st.lists(
        st.tuples(
            st.sampled_from(kinds),
            st.floats(min_value=0, max_value=1),
            st.integers(min_value=0, max_value=5),
        ),
        min_size=1,
        max_size=60,
    )


# mostly batches of ordinary readings only (the column-wise path), each feature mixed in
@settings(max_examples=400, deadline=None)
@given(
    _rows(ORDINARY) | _rows(list(KINDS)),
    st.none() | st.tuples(st.sampled_from(list(KINDS)), st.integers(min_value=0, max_value=60)),
)
def test_a_batch_gets_the_reading_by_reading_verdict(
    picked: list[tuple[str, float, int]], one_more: tuple[str, int] | None
) -> None:
    if one_more is not None:  # one reading of any kind among the others, anywhere
        picked.insert(one_more[1], (one_more[0], 0.5, 0))
    body = orjson.dumps(
        {"facility": "plant-01", "readings": [_reading(k, x, d) for k, x, d in picked]}
    )
    batch = parse_batch(body, received_us=RECEIVED_US, window=WINDOW, max_readings=1000)
    facility, items = _decode_body(body)
    readings, rejected = _one_by_one(facility, items)
    assert batch.readings == readings
    assert batch.rejected == rejected
    assert [math.copysign(1, r.value) for r in batch.readings if r.value == 0] == [
        1.0 for r in batch.readings if r.value == 0
    ]  # -0.0 is stored as 0.0


# each kind alone: None for accepted, else its refusal code (the per-reading rules)
VERDICTS = {
    "foreign_unit": "unknown_unit",
    "boolean": "invalid_reading",
    "text": "invalid_reading",
    "too_low": "value_out_of_range",
    "too_high": "value_out_of_range",
    "bad_quality": "unknown_quality",
    "unknown_metric": "unknown_metric",
    "bad_device": "invalid_id",
    "naive_ts": "timestamp_without_offset",
    "too_old": "timestamp_too_old",
    "just_too_old": "timestamp_too_old",
    "just_in_future": "timestamp_in_future",
    "just_too_high": "value_out_of_range",
    "just_too_low": "value_out_of_range",
    "in_future": "timestamp_in_future",
}


def test_each_kind_alone_gets_its_verdict() -> None:
    for kind in KINDS:
        body = orjson.dumps({"facility": "plant-01", "readings": [_reading(kind, 0.25, 1)]})
        batch = parse_batch(body, received_us=RECEIVED_US, window=WINDOW, max_readings=10)
        codes = [str(r.code) for r in batch.rejected]
        assert codes == ([VERDICTS[kind]] if kind in VERDICTS else []), kind
        assert len(batch.readings) == (kind not in VERDICTS), kind


def test_an_ordinary_batch_is_taken_whole_in_canonical_form() -> None:
    body = orjson.dumps(
        {
            "facility": "plant-01",
            "readings": [
                {
                    "device": "pump-1",
                    "metric": "temperature",
                    "ts": "2026-03-01T13:00:00.5+02:00",
                    "value": -0.0,
                },
                {
                    "device": "pump-2",
                    "metric": "pressure",
                    "ts": "2026-03-01T11:59:59.000001Z",
                    "value": 1000.0,
                    "unit": "bar",
                    "quality": "bad",
                },
            ],
        }
    )
    batch = parse_batch(body, received_us=RECEIVED_US, window=WINDOW, max_readings=10)
    assert batch.rejected == []
    first, second = batch.readings
    assert (first.ts_us, first.value, math.copysign(1, first.value)) == (
        RECEIVED_US - 3600 * 1_000_000 + 500_000,
        0.0,
        1.0,
    )
    assert (second.ts_us, second.value, second.quality) == (RECEIVED_US - 999_999, 1000.0, 2)


def test_one_bad_reading_among_ordinary_ones_is_refused_alone_with_its_reason() -> None:
    readings = [_reading("plain", i / 100, i % 3) for i in range(50)]
    readings[17] = _reading("too_high", 0.5, 1)
    readings[33] = _reading("naive_ts", 0.5, 1)
    body = orjson.dumps({"facility": "plant-01", "readings": readings})
    batch = parse_batch(body, received_us=RECEIVED_US, window=WINDOW, max_readings=100)
    assert len(batch.readings) == 48
    assert [(r.index, r.code) for r in batch.rejected] == [
        (17, RejectCode.VALUE_OUT_OF_RANGE),
        (33, RejectCode.TIMESTAMP_WITHOUT_OFFSET),
    ]
    assert batch.rejected[0].reason == "temperature must be within -60..1200 degC"


def test_a_batch_of_already_refused_items_keeps_them() -> None:
    items: list[ReadingIn | Reject] = [Reject(0, RejectCode.INVALID_READING, "not a reading")]
    batch = validate_batch(
        "plant-01", items, received_us=RECEIVED_US, window=WINDOW, max_readings=10
    )
    assert batch.readings == []
    assert batch.rejected == items
