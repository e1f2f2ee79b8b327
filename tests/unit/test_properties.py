"""Property tests: the data model and the stream codec hold for any input."""

from __future__ import annotations

import contextlib
import json
import math
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from plantstream.errors import InvalidInputError
from plantstream.model import Reading, RejectCode, TimeWindow, now_us, parse_batch
from plantstream.stream.records import UndecodableRecordError, decode_record, pack_readings

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True)
codes = {str(code) for code in RejectCode}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_coded_answer(body: bytes) -> None:
    try:
        batch = parse_batch(body, received_us=now_us(), window=TimeWindow(), max_readings=100)
    except InvalidInputError as exc:
        assert exc.code in codes
        return
    assert all(str(r.code) in codes for r in batch.rejected)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)  # json.dumps would write invalid JSON
    | st.integers()
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "facility": ids,
            "readings": st.lists(
                st.dictionaries(
                    st.sampled_from(["device", "metric", "ts", "value", "unit", "quality", "x"]),
                    json_values,
                    max_size=7,
                ),
                min_size=1,
                max_size=20,
            ),
        }
    )
)
def test_any_json_shaped_batch_is_answered_reading_by_reading(body: dict[str, object]) -> None:
    import json

    batch = parse_batch(
        json.dumps(body).encode(), received_us=now_us(), window=TimeWindow(), max_readings=100
    )
    assert len(batch.readings) + len(batch.rejected) == len(body["readings"])  # type: ignore[arg-type]
    for reading in batch.readings:
        assert math.isfinite(reading.value)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["d1", "d2", "d3"]),
            st.sampled_from(["temperature", "pressure", "power"]),
            st.integers(min_value=0, max_value=2**62),
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(min_value=0, max_value=2),
        ),
        min_size=1,
        max_size=200,
    )
)
def test_records_round_trip_keeping_each_devices_order(
    rows: list[tuple[str, str, int, float, int]],
) -> None:
    readings = [Reading(*row) for row in rows]
    decoded = [decode_record(entry.data) for entry in pack_readings("plant-01", 7, readings)]
    back = [c.reading(i) for c in decoded for i in range(len(c))]
    for device in {r.device for r in readings}:
        assert [r for r in back if r.device == device] == [
            r for r in readings if r.device == device
        ]
    assert all(c.facility == "plant-01" and c.received_us == 7 for c in decoded)


@given(st.binary(max_size=300))
def test_garbage_records_are_refused_not_crashed_on(data: bytes) -> None:
    with contextlib.suppress(UndecodableRecordError):
        decode_record(data)


def _reading_text(fields: list[tuple[str, object]]) -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in fields) + "}"


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=8),
    data=st.data(),
    optional=st.lists(st.sampled_from(["unit", "quality", "quality_code"]), unique=True),
    unit=st.sampled_from(["degC", None]),
)
def test_a_repeated_key_refuses_exactly_its_reading(
    count: int, data: st.DataObject, optional: list[str], unit: str | None
) -> None:
    """JSON decoders keep the last of repeated keys; we refuse the reading rather than guess."""
    ts = datetime.now(UTC).isoformat()
    readings: list[list[tuple[str, object]]] = []
    for i in range(count):
        fields: list[tuple[str, object]] = [
            ("device", f"m{i}"),
            ("metric", "temperature"),
            ("ts", ts),
            ("value", float(i)),
        ]
        extra = {"unit": unit, "quality": "good", "quality_code": 192}
        fields += [(name, extra[name]) for name in optional]
        readings.append(data.draw(st.permutations(fields)))
    victim = data.draw(st.integers(min_value=0, max_value=count - 1))
    key, value = data.draw(st.sampled_from(readings[victim]))
    position = data.draw(st.integers(min_value=0, max_value=len(readings[victim])))
    readings[victim].insert(position, (key, value))  # the same key, even the same value
    body = '{"facility": "plant-01", "readings": [' + ", ".join(map(_reading_text, readings)) + "]}"

    batch = parse_batch(body.encode(), received_us=now_us(), window=TimeWindow(), max_readings=10)

    assert [(r.index, r.code) for r in batch.rejected] == [(victim, RejectCode.DUPLICATE_KEY)]
    assert sorted(r.device for r in batch.readings) == sorted(
        f"m{i}" for i in range(count) if i != victim
    )
