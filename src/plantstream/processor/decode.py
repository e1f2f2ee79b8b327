"""Stream records -> validated readings, dead letters and accounting (the edge is never trusted)."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field

import msgspec
import numpy as np
import numpy.typing as npt

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.ingest.codecs import (
    GATEWAY_BODY,
    GATEWAY_ENVELOPE_PREFIX,
    GATEWAY_MAX_READINGS,
    ForbiddenFacilityError,
)
from plantstream.model import (
    DEFAULT_CATALOG,
    QUALITY_NAMES,
    Reading,
    SignalCatalog,
    TimeWindow,
    ValueType,
    now_us,
    validate_columns,
)
from plantstream.model.readings import MetricTables
from plantstream.model.signals import per_batch
from plantstream.model.values import INT_CODE
from plantstream.processor.rows import DeadLetter
from plantstream.stream.base import StreamRecord
from plantstream.stream.records import (
    DeviceColumns,
    UndecodableRecordError,
    decode_record,
    pack_readings,
)

LATE_AFTER_US = 5 * 60 * 1_000_000  # a reading older than this when it arrived counts as late

_json = msgspec.json.Encoder()
# what may precede a JSON document: JSON whitespace and a UTF-8 byte order mark
_JSON_LEAD = b" \t\r\n\xef\xbb\xbf"


@dataclass(slots=True)
class Decoded:
    """The valid part of each record, in stream order, plus what was refused."""

    records: list[DeviceColumns] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)  # the stream record of each of records
    dead_letters: list[DeadLetter] = field(default_factory=list)
    counters: Counter[tuple[str, str]] = field(default_factory=Counter)


def decode_records(
    records: list[StreamRecord],
    *,
    shard_id: str,
    window: TimeWindow,
    catalog: SignalCatalog = DEFAULT_CATALOG,
) -> Decoded:
    """Decode and re-validate every reading of ``records`` against ``catalog``."""
    out = Decoded()
    counters = out.counters
    # per (facility, metric list), for this batch: its int64 metrics and validation tables
    ints_memo: dict[tuple[str, tuple[str, ...]], npt.NDArray[np.bool_] | None] = {}
    tables_memo: dict[tuple[str, tuple[str, ...]], MetricTables] = {}
    for record in records:
        # Two kinds of record, told apart by an explicit marker, not by a guess: the gateway
        # envelope starts with its fixed 40-byte text GATEWAY_ENVELOPE_PREFIX; a packed record
        # (stream/records.py) starts with its format version byte, FORMAT_V1 = b"\x01", and
        # decode_record refuses any other first byte, so neither can be taken for the other.
        if record.data.startswith(GATEWAY_ENVELOPE_PREFIX):
            _decode_json_body(record, shard_id, window, out, catalog)
            continue
        try:
            columns = decode_record(record.data)
        except UndecodableRecordError as exc:
            if record.data.lstrip(_JSON_LEAD)[:1] == b"{":
                # a raw body without the envelope: what the removed POST /ingest wrote. No
                # path facility came with it, so nothing says IAM allowed its writer that
                # facility: refused as a whole, like a body naming another facility.
                counters[("_unknown", "forbidden_records")] += 1
                out.dead_letters.append(
                    DeadLetter(
                        shard_id,
                        record.sequence,
                        None,
                        ErrorCode.FORBIDDEN_FACILITY,
                        "a gateway body without its facility envelope (the removed "
                        "POST /ingest): post to /ingest/{facility}",
                        record.data,
                    )
                )
                continue
            counters[("_unknown", "undecodable_records")] += 1
            out.dead_letters.append(
                DeadLetter(
                    shard_id,
                    record.sequence,
                    None,
                    ErrorCode.UNDECODABLE_RECORD,
                    str(exc)[:500],
                    record.data,
                )
            )
            continue
        facility = columns.facility[:64]
        if columns.vtype is None:
            columns = _typed_from_doubles(columns, catalog, ints_memo)
        ok, rejects = validate_columns(
            facility=columns.facility,
            device=columns.device,
            metrics=columns.metrics,
            metric_idx=columns.metric_idx,
            ts_us=columns.ts_us,
            values=columns.values,
            quality=columns.quality,
            received_us=columns.received_us,
            window=window,
            catalog=catalog,
            vtype=columns.vtype,
            ints=columns.ints,
            texts=columns.texts,
            qcode=columns.qcode,
            memo=tables_memo,
        )
        n = len(columns)
        counters[(facility, "received")] += n
        counters[(facility, "accepted")] += n - len(rejects)
        for index, error in rejects:
            counters[(facility, f"rejected:{error.code}")] += 1
            counters[(facility, "rejected")] += 1
            out.dead_letters.append(
                DeadLetter(
                    shard_id,
                    record.sequence,
                    facility,
                    str(error.code),
                    error.message,
                    _json.encode(_as_dict(facility, columns.reading(index))),
                )
            )
        if rejects:
            columns = columns.subset(ok)
        late = int(np.count_nonzero(columns.ts_us < columns.received_us - LATE_AFTER_US))
        if late:
            counters[(facility, "late")] += late
        if len(columns):
            out.records.append(columns)
            out.sequences.append(record.sequence)
    return out


def _decode_json_body(
    record: StreamRecord,
    shard_id: str,
    window: TimeWindow,
    out: Decoded,
    catalog: SignalCatalog = DEFAULT_CATALOG,
) -> None:
    """A body as clients send it to ingest, put on the stream by API Gateway in the envelope
    of the path facility IAM authorised (``POST /ingest/{facility}``): decoded by the ingest
    codec of that format, exactly as ingest would (against the facility's catalog); a body
    for another facility is refused."""
    received = now_us()
    try:
        batch = GATEWAY_BODY.decode(
            record.data,
            received_us=received,
            window=window,
            max_readings=GATEWAY_MAX_READINGS,
            catalog=per_batch(catalog),
        )
    except ForbiddenFacilityError as exc:
        out.counters[(exc.path_facility or "_unknown", "forbidden_records")] += 1
        out.dead_letters.append(
            DeadLetter(
                shard_id,
                record.sequence,
                exc.path_facility,
                str(exc.code),
                exc.message,
                record.data,
            )
        )
        return
    except InvalidInputError as exc:
        out.counters[("_unknown", "undecodable_records")] += 1
        out.dead_letters.append(
            DeadLetter(shard_id, record.sequence, None, str(exc.code), exc.message, record.data)
        )
        return
    facility = batch.facility
    out.counters[(facility, "received")] += len(batch.readings) + len(batch.rejected)
    out.counters[(facility, "accepted")] += len(batch.readings)
    for reject in batch.rejected:
        out.counters[(facility, f"rejected:{reject.code}")] += 1
        out.counters[(facility, "rejected")] += 1
        out.dead_letters.append(
            DeadLetter(
                shard_id, record.sequence, facility, str(reject.code), reject.reason, record.data
            )
        )
    late = sum(1 for r in batch.readings if r.ts_us < received - LATE_AFTER_US)
    if late:
        out.counters[(facility, "late")] += late
    devices = _device_columns(facility, received, batch.readings)
    out.records.extend(devices)
    out.sequences.extend(record.sequence for _ in devices)


def _device_columns(
    facility: str, received_us: int, readings: list[Reading]
) -> list[DeviceColumns]:
    """Validated readings as columns, one set per device in first-seen order (through the
    record packer's own column builder, so both paths type their columns the same way)."""
    by_device: dict[str, list[Reading]] = {}
    for reading in readings:
        by_device.setdefault(reading.device, []).append(reading)
    out = []
    for rows in by_device.values():
        for entry in pack_readings(facility, received_us, rows):
            out.append(decode_record(entry.data))
    return out


def _typed_from_doubles(
    columns: DeviceColumns,
    catalog: SignalCatalog,
    memo: dict[tuple[str, tuple[str, ...]], npt.NDArray[np.bool_] | None],
) -> DeviceColumns:
    """A version 1 record (doubles only) whose signals are now int64 (``production_count``
    before value types existed): its integral values become exact int64 readings, so a
    record written before the upgrade is stored as the signal's type says. ``memo`` keeps,
    per (facility, metric list) of the batch, which metric indexes are int64 (None: none)."""
    key = (columns.facility, tuple(columns.metrics))
    if key in memo:
        is_int = memo[key]
    else:
        int_metrics = [
            i
            for i, name in enumerate(columns.metrics)
            if (spec := catalog.get(columns.facility, name)) is not None
            and spec.value_type is ValueType.INT64
        ]
        is_int = None
        if int_metrics:
            is_int = np.zeros(256, dtype=bool)
            is_int[int_metrics] = True
        memo[key] = is_int
    if is_int is None:
        return columns
    rows = np.flatnonzero(is_int[columns.metric_idx])
    picked = columns.values[rows]
    exact = (np.abs(picked) <= 2.0**53) & (np.floor(picked) == picked)  # NaN, inf: False
    rows, picked = rows[exact], picked[exact]
    n = len(columns)
    vtype = np.zeros(n, dtype=np.uint8)
    vtype[rows] = INT_CODE
    ints = np.zeros(n, dtype=np.int64)
    ints[rows] = picked.astype(np.int64)
    texts, qcode = _untyped(n)
    return DeviceColumns(
        columns.facility,
        columns.device,
        columns.received_us,
        columns.metrics,
        columns.metric_idx,
        columns.ts_us,
        columns.values,
        columns.quality,
        vtype,
        ints,
        texts,
        qcode,
    )


@functools.lru_cache(maxsize=64)
def _untyped(n: int) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]]:
    """Read-only columns of ``n`` readings without text or quality code (shared: records of
    one length are many)."""
    texts = np.full(n, None, dtype=object)
    qcode = np.full(n, -1, dtype=np.int64)
    texts.flags.writeable = False
    qcode.flags.writeable = False
    return texts, qcode


def reading_payload(facility: str, reading: Reading) -> bytes:
    """A refused reading as the JSON a dead letter keeps."""
    return _json.encode(_as_dict(facility, reading))


def _as_dict(facility: str, reading: Reading) -> dict[str, object]:
    """The refused reading with its typed value (int64 exact, bool, text) as it arrived."""
    out: dict[str, object] = {
        "facility": facility,
        "device": reading.device,
        "metric": reading.metric,
        "ts_us": reading.ts_us,
        "value": reading.value,
        "quality": QUALITY_NAMES.get(reading.quality, reading.quality),
    }
    if reading.value_type is not ValueType.DOUBLE:
        out["value_type"] = str(reading.value_type)
    if reading.quality_code is not None:
        out["quality_code"] = reading.quality_code
    return out
