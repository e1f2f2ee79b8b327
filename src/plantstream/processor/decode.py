"""Stream records -> validated rows, dead letters and accounting (the edge is never trusted)."""

from __future__ import annotations

import msgspec

from plantstream.errors import InvalidInputError
from plantstream.model import (
    QUALITY_NAMES,
    Reading,
    RejectCode,
    TimeWindow,
    check_id,
    validate_fields,
)
from plantstream.processor.rows import DeadLetter, RowBatch
from plantstream.stream.base import StreamRecord
from plantstream.stream.records import RecordBatch, UndecodableRecordError, decode_record

LATE_AFTER_US = 5 * 60 * 1_000_000  # a reading older than this when it arrived counts as late

_json = msgspec.json.Encoder()


def decode_records(
    records: list[StreamRecord], *, shard_id: str, window: TimeWindow
) -> tuple[list[tuple[str, Reading, bool]], RowBatch]:
    """Validate every reading of ``records``.

    Returns the valid readings as (facility, reading, late) in stream order, and a
    ``RowBatch`` holding the dead letters and the received/accepted/rejected/late counters
    (sensor ids are filled in later by the caller).
    """
    batch = RowBatch()
    valid: list[tuple[str, Reading, bool]] = []
    counters = batch.counters
    for record in records:
        try:
            body: RecordBatch = decode_record(record.data)
        except UndecodableRecordError as exc:
            counters[("_unknown", "undecodable_records")] += 1
            batch.dead_letters.append(
                DeadLetter(
                    shard_id,
                    record.sequence,
                    None,
                    RejectCode.UNDECODABLE_RECORD,
                    str(exc)[:500],
                    record.data,
                )
            )
            continue
        facility = body.facility
        received = body.received_us
        counters[(facility, "received")] += len(body.readings)
        for reading in body.readings:
            try:
                checked = validate_fields(
                    device=reading.device,
                    metric=reading.metric,
                    ts_us=reading.ts_us,
                    value=reading.value,
                    unit=None,
                    quality=reading.quality,
                    received_us=received,
                    window=window,
                )
                check_id(facility, "facility")  # it travels outside the reading
            except InvalidInputError as exc:
                counters[(facility, f"rejected:{exc.code}")] += 1
                counters[(facility, "rejected")] += 1
                batch.dead_letters.append(
                    DeadLetter(
                        shard_id,
                        record.sequence,
                        facility[:64],
                        str(exc.code),
                        exc.message,
                        _json.encode(_as_dict(facility, reading)),
                    )
                )
                continue
            late = received - checked.ts_us > LATE_AFTER_US
            counters[(facility, "accepted")] += 1
            if late:
                counters[(facility, "late")] += 1
            valid.append((facility, checked, late))
    return valid, batch


def _as_dict(facility: str, reading: Reading) -> dict[str, object]:
    return {
        "facility": facility,
        "device": reading.device,
        "metric": reading.metric,
        "ts_us": reading.ts_us,
        "value": reading.value,
        "quality": QUALITY_NAMES.get(reading.quality, reading.quality),
    }
