"""The ``line`` ingest format: line protocol syntax (escapes, value types, timestamps) and how
a line maps onto facility, device and signal, with every refusal coded and by line."""

from __future__ import annotations

import pytest

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.ingest import CODECS
from plantstream.ingest.line_parse import StringValue, parse_line
from plantstream.ingest.line_protocol import (
    LineOptions,
    LineProtocolError,
    line_payload,
    reading_lines,
)
from plantstream.model import (
    FixedCatalog,
    ParsedBatch,
    Reading,
    SignalDef,
    SignalKind,
    TimeWindow,
    ValueType,
)

NOW_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
WINDOW = TimeWindow()


def decode(body: str | bytes, **options: object) -> ParsedBatch:
    raw = body.encode() if isinstance(body, str) else body
    payload = line_payload(raw, LineOptions(**{"facility": "plant-a", **options}))  # type: ignore[arg-type]
    return CODECS.get("line").decode(payload, received_us=NOW_US, window=WINDOW, max_readings=100)


def test_each_field_is_one_reading_of_the_device_tag() -> None:
    batch = decode(
        "cnc,device=press-1 temperature=41.5,pressure=2i 1767225600000000000\n"
        "cnc,machine=press-2 spindle_speed=1200 1767225601000000000\n"
        "mill-3 humidity=40\n"  # no device tag: the measurement names the device
    )
    assert batch.facility == "plant-a"
    assert batch.rejected == []
    assert batch.readings == [
        Reading("press-1", "temperature", NOW_US, 41.5, 0),
        Reading("press-1", "pressure", NOW_US, 2.0, 0),
        Reading("press-2", "spindle_speed", NOW_US + 1_000_000, 1200.0, 0),
        Reading("mill-3", "humidity", NOW_US, 40.0, 0),  # no timestamp: received now
    ]


@pytest.mark.parametrize(
    ("precision", "stamp"),
    [("ns", 1767225600123456789), ("us", 1767225600123456), ("ms", 1767225600123),
     ("s", 1767225600)],
)  # fmt: skip
def test_precision_scales_the_timestamp_to_microseconds(precision: str, stamp: int) -> None:
    batch = decode(f"m,device=d temperature=1 {stamp}", precision=precision)
    expected = {"ns": 123456, "us": 123456, "ms": 123000, "s": 0}[precision]
    assert batch.readings[0].ts_us == NOW_US + expected


def test_escapes_booleans_units_and_quality() -> None:
    line = parse_line(r"my\ meas,device=a\,b\=c,unit=degF flag=t,x\ y=-1.5e2,n=3u")
    assert line.measurement == "my meas"
    assert line.tags == {"device": "a,b=c", "unit": "degF"}
    assert line.fields == {"flag": True, "x y": -150.0, "n": 3}
    strings = parse_line(r'm s="a \"quoted\", spaced string",t=FALSE 5')
    assert strings.fields == {"s": StringValue('a "quoted", spaced string'), "t": False}
    assert strings.timestamp == 5
    batch = decode("m,device=d,unit=degF,quality=uncertain temperature=212 1767225600000000000")
    assert batch.readings == [Reading("d", "temperature", NOW_US, 100.0, 1)]


def test_measurement_field_naming() -> None:
    batch = decode("power,device=d kW=1.5", signal="measurement_field")
    assert batch.rejected[0].code is ErrorCode.UNKNOWN_METRIC
    assert "power_kW" in batch.rejected[0].reason
    named = decode("vibration,device=d rms=1", signal="measurement_field")
    assert [r.metric for r in named.readings] == ["vibration_rms"]


def test_semantic_refusals_are_per_field_with_the_line_and_a_code() -> None:
    body = (
        "# a comment, then a blank line\n\n"
        'm,device=d temperature=20,status="running"\n'  # line 3: a string of no signal
        "m,device=d,host=h temperature=21\n"  # line 4: a tag with no place
        "m,device=d,facility=plant-b temperature=22\n"  # line 5: another facility
        "m,device=d temperature=9999,nope=1\n"  # line 6: out of range, unknown signal
        'm,device=d humidity="wet"\n'  # line 7: a string for a double signal
        "m,device=d temperature=23,humidity=t\r\n"  # line 8: fine (CRLF, a boolean)
    )
    batch = decode(body)
    assert [(r.index, r.code) for r in batch.rejected] == [
        (1, ErrorCode.UNKNOWN_METRIC),
        (2, ErrorCode.UNMAPPED_TAG),
        (3, ErrorCode.FORBIDDEN_FACILITY),
        (4, ErrorCode.VALUE_OUT_OF_RANGE),
        (5, ErrorCode.UNKNOWN_METRIC),
        (6, ErrorCode.UNSUPPORTED_VALUE_TYPE),
    ]
    assert batch.rejected[1].reason.startswith("line 4, field 'temperature': ")
    assert [r.value for r in batch.readings] == [20.0, 23.0, 1.0]
    payload = line_payload(body.encode(), LineOptions(facility="plant-a"))
    lines = reading_lines(payload)
    assert [lines[r.index][0] for r in batch.rejected] == [3, 4, 5, 6, 6, 7]
    assert lines[5] == (6, "nope")


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("m,device=d temperature=1\nm,device=d\n", 2, "missing fields"),
        ("m temperature=1\nm temperature=\n", 2, "missing field value"),
        ("m temperature=abc", 1, "invalid field value"),
        ("m temperature=nan", 1, "invalid field value"),
        ("m temperature=1 12x", 1, "bad timestamp"),
        ("m temperature=1 1 2", 1, "invalid field format"),
        ('m s="open', 1, "unterminated string"),
        ("m,device=d,device=e temperature=1", 1, "duplicate tag"),
        ("m temperature=1,temperature=2", 1, "duplicate field"),
        ("m =1", 1, "missing field key"),
        ("m,=x temperature=1", 1, "missing tag key"),
        ("m temperature=99999999999999999999i", 1, "out of range"),
        (b"m temperature=1\nm\xff temperature=2", 2, "not valid UTF-8"),
    ],
)
def test_syntax_errors_refuse_the_whole_body_with_the_line(
    body: str | bytes, line: int, words: str
) -> None:
    with pytest.raises(LineProtocolError) as caught:
        decode(body)
    assert caught.value.code is ErrorCode.INVALID_LINE_PROTOCOL
    assert caught.value.line == line
    assert words in caught.value.message


def test_bounds_and_the_facility() -> None:
    with pytest.raises(InvalidInputError) as empty:
        decode("# only a comment\n")
    assert empty.value.code is ErrorCode.EMPTY_BATCH
    with pytest.raises(InvalidInputError) as large:
        decode("\n".join(f"m,device=d{i} temperature=1" for i in range(101)))
    assert large.value.code is ErrorCode.BATCH_TOO_LARGE
    tagged = decode("m,device=d,facility=plant-z temperature=1", facility=None)
    assert tagged.facility == "plant-z"
    assert len(tagged.readings) == 1
    with pytest.raises(InvalidInputError) as none:
        decode("m,device=d temperature=1", facility=None)
    assert none.value.code is ErrorCode.INVALID_REQUEST
    with pytest.raises(InvalidInputError) as bad_bucket:
        decode("m temperature=1", facility="no spaces allowed")
    assert bad_bucket.value.code is ErrorCode.INVALID_ID
    with pytest.raises(InvalidInputError) as precision:
        decode("m temperature=1", precision="d")
    assert precision.value.code is ErrorCode.INVALID_REQUEST
    with pytest.raises(InvalidInputError) as headless:
        CODECS.get("line").decode(b"m temperature=1", received_us=NOW_US, window=WINDOW,
                                  max_readings=10)  # fmt: skip
    assert headless.value.code is ErrorCode.UNDECODABLE_RECORD


def test_declared_typed_signals_take_their_own_field_types() -> None:
    catalog = FixedCatalog(
        {
            "state": SignalDef("state", ValueType.STATE, SignalKind.STATE, states=("idle", "run")),
            "running": SignalDef("running", ValueType.BOOL, SignalKind.STATE),
            "parts": SignalDef("parts", ValueType.INT64, SignalKind.COUNTER, wrap=2**64),
            "voltage": SignalDef("voltage", unit="kV", accepted_units=("V",)),
        }
    )
    payload = line_payload(
        b'press,device=p1 state="run",running=t,parts=9007199254740993i\n'
        b"press,device=p1,unit=V voltage=400\n"
        b'press,device=p1 state="dancing",temperature=20\n',
        LineOptions(facility="plant-a"),
    )
    batch = CODECS.get("line").decode(
        payload, received_us=NOW_US, window=WINDOW, max_readings=100, catalog=catalog
    )
    assert [(r.metric, r.value) for r in batch.readings] == [
        ("state", "run"),
        ("running", True),
        ("parts", 2**53 + 1),  # exact: never through a double
        ("voltage", pytest.approx(0.4)),
    ]
    # not one of its states; and the facility's catalog holds no default it did not declare
    assert [(r.index, r.code) for r in batch.rejected] == [
        (4, ErrorCode.UNKNOWN_STATE),
        (5, ErrorCode.UNKNOWN_METRIC),
    ]
