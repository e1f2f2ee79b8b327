"""The processor checks a batch's packed records together (one mask over all their readings);
the outcome must be exactly each record's own check (``validate_columns``, after the typing
of an old doubles-only record): the same readings kept in the same order, the same counters,
the same dead letters with the same reasons, whatever mix of records a batch holds."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from plantstream.ingest.codecs import gateway_envelope
from plantstream.model import (
    DEFAULT_SIGNALS,
    FixedCatalog,
    SignalDef,
    SignalKind,
    TimeWindow,
    ValueType,
)
from plantstream.model.values import TEXT_LUT
from plantstream.processor.decode import (
    LATE_AFTER_US,
    Decoded,
    _check_record,
    _decode_part,
    _typed_from_doubles,
    decode_records,
)
from plantstream.stream.base import StreamRecord
from plantstream.stream.records import (
    FORMAT_V1,
    FORMAT_V2,
    DeviceRecord,
    TypedDeviceRecord,
    decode_record,
)

RECEIVED_US = 1_780_000_000_000_000
WINDOW = TimeWindow()
CATALOG = FixedCatalog(
    {
        **DEFAULT_SIGNALS,
        "running": SignalDef("running", ValueType.BOOL, SignalKind.STATE),
        "mode": SignalDef("mode", ValueType.STATE, SignalKind.STATE, states=("idle", "run")),
        "note": SignalDef("note", ValueType.STRING, SignalKind.STATE),
    }
)
# names a record may list: gauges, an int64 counter, typed signals, and one without a signal
NAMES = ["temperature", "pressure", "production_count", "running", "mode", "note", "colour"]
OFFSETS = [0, -1_000_000, -LATE_AFTER_US - 1, -WINDOW.max_past_us - 1, WINDOW.max_future_us + 1]
VALUES = [20.5, 3.0, -0.0, 1e300, -61.0, float("nan"), float("inf"), 2.0**60]
TEXTS = ["idle", "run", "hot", "x" * 300]


@dataclass(frozen=True)
class Row:
    metric: int
    offset: int
    value: float
    quality: int
    vtype: int
    text: str
    qcode: int


rows = st.builds(
    Row,
    metric=st.integers(0, len(NAMES)),  # one past the list: an index without a name
    offset=st.sampled_from(OFFSETS),
    value=st.sampled_from(VALUES),
    quality=st.sampled_from([0, 0, 0, 1, 2, 3]),
    vtype=st.sampled_from([0, 0, 0, 1, 2, 3, 4, 255]),
    text=st.sampled_from(TEXTS),
    qcode=st.sampled_from([-1, -1, 0, 192, 2**33]),
)


# readings that pass unless their signal says otherwise (20.5 of an int64 counter does not):
# a record of these alone is decided by the batch check, with no record check to fall back to
CLEAN_ROWS = st.builds(
    Row,
    metric=st.integers(0, 2),  # temperature, pressure, production_count
    offset=st.sampled_from(OFFSETS[:3]),
    value=st.sampled_from([20.5, 3.0, -0.0, 7.0]),
    quality=st.sampled_from([0, 1, 2]),
    vtype=st.just(0),
    text=st.just(""),
    qcode=st.just(-1),
)


@st.composite
def clean_records(draw: st.DrawFn) -> bytes:
    readings = draw(st.lists(CLEAN_ROWS, min_size=1, max_size=12))
    metrics = NAMES[:3]
    return FORMAT_V1 + msgspec.msgpack.encode(
        DeviceRecord(
            "plant-a",
            draw(st.sampled_from(["press-1", "press-2"])),
            RECEIVED_US,
            metrics,
            bytes(r.metric for r in readings),
            np.array([RECEIVED_US + r.offset for r in readings], "<i8").tobytes(),
            np.array([r.value for r in readings], "<f8").tobytes(),
            bytes(r.quality for r in readings),
        )
    )


@st.composite
def records(draw: st.DrawFn) -> bytes:
    facility = draw(st.sampled_from(["plant-a", "plant-b", "-bad"]))
    device = draw(st.sampled_from(["press-1", "press-2", "bad device"]))
    metrics = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    readings = draw(st.lists(rows, min_size=0, max_size=12))
    received = RECEIVED_US + draw(st.sampled_from([0, 5_000_000]))
    idx = bytes(min(r.metric, len(metrics)) for r in readings)
    ts = np.array([received + r.offset for r in readings], "<i8").tobytes()
    values = np.array([r.value for r in readings], "<f8").tobytes()
    quality = bytes(r.quality for r in readings)
    if draw(st.booleans()):  # an old record: doubles only
        return FORMAT_V1 + msgspec.msgpack.encode(
            DeviceRecord(facility, device, received, metrics, idx, ts, values, quality)
        )
    vtype = bytes(r.vtype for r in readings)
    texts = [r.text for r in readings if TEXT_LUT[r.vtype]]
    ints = np.array([int(r.value) if abs(r.value) < 2**62 else 0 for r in readings], "<i8")
    qcode = np.array([r.qcode for r in readings], "<i8").tobytes()
    return FORMAT_V2 + msgspec.msgpack.encode(
        TypedDeviceRecord(
            facility,
            device,
            received,
            metrics,
            idx,
            ts,
            values,
            quality,
            vtype,
            ints.tobytes(),
            texts,
            qcode,
        )
    )


GATEWAY = gateway_envelope(
    "plant-a", b'{"device":"press-9","readings":[{"metric":"temperature","value":1.5}]}'
)
batches = st.lists(
    st.one_of(records(), clean_records(), st.just(GATEWAY), st.just(b"\x03not a record")),
    min_size=1,
    max_size=8,
)


def one_by_one(stream: list[StreamRecord]) -> tuple[list[tuple[object, ...]], Decoded]:
    """The reference: each record checked on its own, as the processor did before."""
    out = Decoded()
    kept: list[tuple[object, ...]] = []
    for record in stream:
        if record.data[:1] not in (FORMAT_V1, FORMAT_V2) or record.data == b"\x03not a record":
            part = _decode_part(record, "s", WINDOW, CATALOG)
            assert part.refused is not None
            out.dead_letters += part.refused.dead_letters
            out.counters.update(part.refused.counters)
            for columns in part.devices:
                kept += _rows(columns, record.sequence, np.ones(len(columns), bool))
            continue
        columns = decode_record(record.data)
        facility = columns.facility[:64]
        out.counters[(facility, "received")] += len(columns)
        # the record's own check (what a record with a refused reading gets in the batch)
        ok = _check_record(
            out,
            columns,
            shard_id="s",
            window=WINDOW,
            catalog=CATALOG,
            ints_memo={},
            tables_memo={},
            facility=facility,
            sequence=record.sequence,
        )
        if columns.vtype is None:
            columns = _typed_from_doubles(columns, CATALOG, {})
        late = int(np.count_nonzero(ok & (columns.ts_us < columns.received_us - LATE_AFTER_US)))
        if late:
            out.counters[(facility, "late")] += late
        kept += _rows(columns, record.sequence, ok)
    return kept, out


def _rows(columns: object, sequence: str, ok: np.ndarray) -> list[tuple[object, ...]]:
    return [
        (sequence, columns.facility, *_typed(columns.reading(i)))  # type: ignore[attr-defined]
        for i in np.flatnonzero(ok).tolist()
    ]


def _typed(reading: object) -> tuple[object, ...]:
    fields = msgspec.structs.astuple(reading)  # type: ignore[arg-type]
    # NaN never equals itself: compare the bits of a float
    return tuple(np.float64(f).tobytes() if isinstance(f, float) else f for f in fields)


@settings(max_examples=300, deadline=None)
@given(batches)
def test_the_batch_check_keeps_and_refuses_what_each_record_check_does(
    data: list[bytes],
) -> None:
    stream = [StreamRecord(str(i), d) for i, d in enumerate(data)]
    expected_rows, expected = one_by_one(stream)
    got = decode_records(stream, shard_id="s", window=WINDOW, catalog=CATALOG)
    flat = got.flat
    rows_got = [
        (flat.sequence[r], flat.facility[r], *_typed(flat.reading(i)))
        for i, r in enumerate(flat.record.tolist())
    ]
    assert rows_got == expected_rows
    assert +got.counters == +expected.counters  # (+: without the zero counts)
    assert Counter(got.counters) == Counter(expected.counters)
    assert [
        (d.sequence, d.facility, d.reason_code, d.reason, d.payload) for d in got.dead_letters
    ] == [
        (d.sequence, d.facility, d.reason_code, d.reason, d.payload) for d in expected.dead_letters
    ]


def test_a_reading_of_a_metric_without_a_signal_is_refused_whatever_type_it_claims() -> None:
    """Found writing the batch check: a typed record could carry the "unknown" type code
    (255) that the tables give a name without a signal, and the type comparison then let the
    reading through to be stored as a new sensor. Refused now, with the reason a client gets."""
    (data,) = [
        FORMAT_V2
        + msgspec.msgpack.encode(
            TypedDeviceRecord(
                "plant-a",
                "press-1",
                RECEIVED_US,
                ["colour", "temperature"],
                bytes([0, 1]),
                np.array([RECEIVED_US, RECEIVED_US], "<i8").tobytes(),
                np.array([1.0, 2.0], "<f8").tobytes(),
                bytes([0, 0]),
                bytes([255, 0]),
                np.zeros(2, "<i8").tobytes(),
                [],
                np.full(2, -1, "<i8").tobytes(),
            )
        )
    ]
    out = decode_records([StreamRecord("1", data)], shard_id="s", window=WINDOW, catalog=CATALOG)
    assert [out.flat.reading(i).metric for i in range(len(out.flat))] == ["temperature"]
    assert [(d.reason_code, d.facility) for d in out.dead_letters] == [
        ("unknown_metric", "plant-a")
    ]
    assert out.counters[("plant-a", "rejected:unknown_metric")] == 1


def test_an_old_record_types_only_the_integral_counts_as_each_record_check_does() -> None:
    """Doubles-only records of an int64 signal: 3.0 becomes the int64 3; 20.5 and 2**60 (not
    exact as a double) are refused. Each value has a record of its own, so the batch check
    decides it (a record with a refused reading is checked again on its own)."""

    def record(value: float) -> bytes:
        return FORMAT_V1 + msgspec.msgpack.encode(
            DeviceRecord(
                "plant-a",
                "press-1",
                RECEIVED_US,
                ["production_count"],
                bytes([0]),
                np.full(1, RECEIVED_US, "<i8").tobytes(),
                np.array([value], "<f8").tobytes(),
                bytes(1),
            )
        )

    stream = [StreamRecord(str(n), record(v)) for n, v in enumerate([3.0, 20.5, 2.0**60, 7.0])]
    expected_rows, expected = one_by_one(stream)
    got = decode_records(stream, shard_id="s", window=WINDOW, catalog=CATALOG)
    flat = got.flat
    assert [
        (flat.sequence[r], flat.facility[r], *_typed(flat.reading(i)))
        for i, r in enumerate(flat.record.tolist())
    ] == expected_rows
    assert [flat.reading(i).value for i in range(len(flat))] == [3, 7]
    assert got.counters == expected.counters
    assert got.counters[("plant-a", "rejected")] == 2
