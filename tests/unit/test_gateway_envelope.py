"""The API Gateway record: the client's body in the envelope of the path facility IAM
authorised (``POST /ingest/{facility}``), decoded by the ``apigw`` codec and dispatched by the
processor by its marker, never by a first-byte guess."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.ingest import CODECS
from plantstream.ingest.codecs import (
    GATEWAY_ENVELOPE_PREFIX,
    ForbiddenFacilityError,
    gateway_envelope,
    open_gateway_envelope,
)
from plantstream.model import Reading, TimeWindow, now_us
from plantstream.processor.decode import decode_records
from plantstream.stream.base import StreamRecord
from plantstream.stream.records import FORMAT_V1, pack_readings

WINDOW = TimeWindow(10**15, 10**15)
BODY = orjson.dumps(
    {
        "facility": "plant-a",
        "readings": [
            {
                "device": "press-1",
                "metric": "temperature",
                "ts": "2026-01-01T00:00:00Z",
                "value": 1,
            },
            {
                "device": "press-2",
                "metric": "temperature",
                "ts": "2026-01-01T00:00:00Z",
                "value": 2,
            },
        ],
    }
)
BOM = b"\xef\xbb\xbf"


def decode(payload: bytes) -> object:
    return CODECS.get("apigw").decode(payload, received_us=now_us(), window=WINDOW, max_readings=10)


def refused(payload: bytes) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        decode(payload)
    return caught.value


def test_an_envelope_of_the_bodys_own_facility_decodes_like_ingest() -> None:
    batch = CODECS.get("apigw").decode(
        gateway_envelope("plant-a", BODY), received_us=now_us(), window=WINDOW, max_readings=1
    )
    assert (batch.facility, [r.device for r in batch.readings], batch.rejected) == (
        "plant-a",
        ["press-1", "press-2"],
        [],
    )


@pytest.mark.parametrize("lead", [b" ", b"\r\n\t  ", BOM, BOM + b"\n "])
def test_the_body_may_start_with_json_whitespace_or_a_utf8_bom(lead: bytes) -> None:
    batch = CODECS.get("apigw").decode(
        gateway_envelope("plant-a", lead + BODY + b"\n"),
        received_us=now_us(),
        window=WINDOW,
        max_readings=1,
    )
    assert (batch.facility, len(batch.readings)) == ("plant-a", 2)


def test_a_body_for_another_facility_is_refused_forbidden_facility() -> None:
    error = refused(gateway_envelope("plant-b", BODY))
    assert isinstance(error, ForbiddenFacilityError)
    assert error.code == ErrorCode.FORBIDDEN_FACILITY
    assert error.path_facility == "plant-b"
    assert "plant-a" in error.message
    assert "/ingest/plant-b" in error.message
    # a path that is no valid id is not kept as a facility
    error = refused(gateway_envelope("bad id!", BODY))
    assert (error.code, getattr(error, "path_facility", "?")) == (
        ErrorCode.FORBIDDEN_FACILITY,
        None,
    )


def test_a_body_cannot_add_a_second_facility_to_the_envelope() -> None:
    """A body that closes itself and appends ``"facility": ...`` would make the envelope name
    its facility twice (JSON keeps the last): the envelope is read as fixed text instead, so
    that body is one document with trailing data, refused."""
    body = BODY + b', "facility": "plant-a"'
    error = refused(gateway_envelope("plant-b", body))
    assert error.code == ErrorCode.INVALID_JSON


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", ErrorCode.INVALID_JSON),
        (b"", ErrorCode.INVALID_JSON),
        (b'{"facility": "plant-a", "readings": [', ErrorCode.INVALID_JSON),
        (b'{"readings": []}', ErrorCode.INVALID_BODY),
        (b'{"facility": "plant-a"}', ErrorCode.INVALID_BODY),
        (b'{"facility": "plant-a", "readings": []}', ErrorCode.EMPTY_BATCH),
        (BOM + BOM + BODY, ErrorCode.INVALID_JSON),  # one BOM is ignored, not any number
    ],
)
def test_a_bad_body_in_a_good_envelope_is_refused_with_its_code(
    body: bytes, code: ErrorCode
) -> None:
    assert refused(gateway_envelope("plant-a", body)).code == code


@pytest.mark.parametrize(
    "payload",
    [
        BODY,  # the old, unwrapped body
        GATEWAY_ENVELOPE_PREFIX + b'plant-a"}',  # no body
        GATEWAY_ENVELOPE_PREFIX + b"plant-a" + b'", "body": ' + BODY[:-1],  # cut short
        b'{"plantstream_gateway": 2, "facility": "plant-a", "body": ' + BODY + b"}",
        GATEWAY_ENVELOPE_PREFIX + b"\xff\xfe" + b'", "body": ' + BODY + b"}",
    ],
)
def test_a_malformed_envelope_is_undecodable(payload: bytes) -> None:
    with pytest.raises(InvalidInputError) as caught:
        open_gateway_envelope(payload)
    assert caught.value.code == ErrorCode.UNDECODABLE_RECORD
    assert refused(payload).code == ErrorCode.UNDECODABLE_RECORD


def _record(data: bytes, seq: str = "1") -> StreamRecord:
    return StreamRecord(seq, data)


def test_the_processor_dead_letters_a_forbidden_record_whole_and_counts_it() -> None:
    out = decode_records([_record(gateway_envelope("plant-b", BODY))], shard_id="s", window=WINDOW)
    assert len(out.flat) == 0
    assert [(d.facility, d.reason_code) for d in out.dead_letters] == [
        ("plant-b", "forbidden_facility")
    ]
    assert out.dead_letters[0].payload == gateway_envelope("plant-b", BODY)
    assert out.counters == {("plant-b", "forbidden_records"): 1}


@pytest.mark.parametrize("lead", [b"", b" \n", BOM])
def test_an_unwrapped_body_of_the_removed_post_ingest_is_forbidden(lead: bytes) -> None:
    """Before: a body with leading whitespace or a BOM was undecodable and one without was
    stored for whatever facility it named. Now neither is stored: nothing says IAM allowed
    its writer that facility."""
    out = decode_records([_record(lead + BODY)], shard_id="s", window=WINDOW)
    assert len(out.flat) == 0
    assert [d.reason_code for d in out.dead_letters] == ["forbidden_facility"]
    assert out.counters == {("_unknown", "forbidden_records"): 1}


def test_the_dispatch_is_by_marker_and_binary_records_still_decode() -> None:
    readings = [Reading("press-1", "temperature", now_us(), 1.0, 0)]
    (entry,) = pack_readings("plant-a", now_us(), readings)
    # a packed record starts with its version byte, which is never the envelope's "{"
    assert entry.data[:1] == FORMAT_V1 != GATEWAY_ENVELOPE_PREFIX[:1]
    out = decode_records(
        [
            _record(entry.data, "1"),
            _record(gateway_envelope("plant-a", b"\n" + BODY), "2"),
            _record(b"\x02garbage", "3"),
        ],
        shard_id="s",
        window=WINDOW,
    )
    flat = out.flat
    # the devices whose readings were kept, each with its stream record, in stream order
    kept = [
        (flat.facility[r], flat.device[r], flat.sequence[r])
        for r in dict.fromkeys(flat.record.tolist())
    ]
    assert kept == [
        ("plant-a", "press-1", "1"),
        ("plant-a", "press-1", "2"),
        ("plant-a", "press-2", "2"),
    ]
    assert [d.reason_code for d in out.dead_letters] == ["undecodable_record"]
    assert out.counters[("plant-a", "accepted")] == 3


DATA = Path(__file__).parents[1] / "data"
EXPECTED: dict[str, list[object]] = {
    name: answer
    for name, answer in orjson.loads((DATA / "bad_inputs_expected.json").read_bytes()).items()
    if not name.startswith("_") and not name.endswith(".gz")  # no Content-Encoding here
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_gateway_path_refuses_the_bad_input_corpus_as_ingest_does(name: str) -> None:
    """Each file of the HTTP bad-input corpus, posted to /ingest/plant-01, is refused by the
    apigw codec with the code HTTP ingest answers (202: per reading, else the whole body)."""
    status, code = EXPECTED[name]
    payload = gateway_envelope("plant-01", (DATA / "bad_inputs" / name).read_bytes())
    if status == 202:
        batch = CODECS.get("apigw").decode(
            payload, received_us=now_us(), window=WINDOW, max_readings=10
        )
        assert batch.readings == []
        assert [r.code for r in batch.rejected] == [code]
    else:
        assert refused(payload).code == code
