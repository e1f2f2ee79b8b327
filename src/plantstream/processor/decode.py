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
    FixedCatalog,
    Reading,
    SignalCatalog,
    TimeWindow,
    ValueType,
    now_us,
    validate_columns,
)
from plantstream.model.readings import (
    MetricTables,
    is_valid_id,
    metric_tables,
    valid_mask,
)
from plantstream.model.signals import SignalDef, per_batch
from plantstream.model.values import DOUBLE_CODE, INT_CODE, TYPES_BY_CODE, typed_at
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
class Flat:
    """A batch's valid readings, every record's side by side in stream order: one set of
    columns, so the batch is checked and turned into rows with a few numpy calls rather than
    a few per record (a record holds one device's readings of one request: often only tens).

    Per record (``record`` of a row indexes these): its facility, device, metric names and
    stream sequence; per row: the record's columns, with ``received_us`` repeated. The typed
    columns are None when no record is typed (every value a double, no quality codes).
    """

    facility: list[str]
    device: list[str]
    metrics: list[list[str]]
    sequence: list[str]
    record: npt.NDArray[np.intp]
    metric_idx: npt.NDArray[np.uint8]
    ts_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    quality: npt.NDArray[np.uint8]
    received_us: npt.NDArray[np.int64]
    vtype: npt.NDArray[np.uint8] | None = None
    ints: npt.NDArray[np.int64] | None = None
    texts: npt.NDArray[np.object_] | None = None
    qcode: npt.NDArray[np.int64] | None = None

    @classmethod
    def empty(cls) -> Flat:
        return cls(
            [],
            [],
            [],
            [],
            np.empty(0, np.intp),
            np.empty(0, np.uint8),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.uint8),
            np.empty(0, np.int64),
        )

    def __len__(self) -> int:
        return len(self.ts_us)

    def reading(self, i: int) -> Reading:
        """Row ``i`` as the reading it arrived as (a dead letter's payload)."""
        r = int(self.record[i])
        index = int(self.metric_idx[i])
        names = self.metrics[r]
        code = DOUBLE_CODE if self.vtype is None else int(self.vtype[i])
        value = typed_at(code, float(self.values[i]), self.ints, self.texts, i)
        qcode = None if self.qcode is None or self.qcode[i] < 0 else int(self.qcode[i])
        return Reading(
            self.device[r],
            names[index] if index < len(names) else f"#{index}",
            int(self.ts_us[i]),
            value,
            int(self.quality[i]),
            TYPES_BY_CODE[code] if code < len(TYPES_BY_CODE) else ValueType.DOUBLE,
            qcode,
        )

    def take(self, keep: npt.NDArray[np.bool_]) -> Flat:
        """The rows where ``keep`` is true (the records stay, some perhaps without rows)."""
        return Flat(
            self.facility,
            self.device,
            self.metrics,
            self.sequence,
            self.record[keep],
            self.metric_idx[keep],
            self.ts_us[keep],
            self.values[keep],
            self.quality[keep],
            self.received_us[keep],
            None if self.vtype is None else self.vtype[keep],
            None if self.ints is None else self.ints[keep],
            None if self.texts is None else self.texts[keep],
            None if self.qcode is None else self.qcode[keep],
        )


@dataclass(slots=True)
class Decoded:
    """The valid readings of the records (``flat``), in stream order, plus what was refused."""

    flat: Flat = field(default_factory=Flat.empty)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    counters: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass(slots=True)
class _Part:
    """One stream record on its way through ``decode_records``: its device columns (a packed
    record has one, to check; a gateway body several, checked already by its codec) and what
    was refused or counted while decoding it (a gateway body's own, or an undecodable one)."""

    sequence: str
    devices: list[DeviceColumns]
    checked: bool
    refused: Decoded | None = None


def decode_records(
    records: list[StreamRecord],
    *,
    shard_id: str,
    window: TimeWindow,
    catalog: SignalCatalog = DEFAULT_CATALOG,
) -> Decoded:
    """Decode and re-validate every reading of ``records`` against ``catalog``.

    The readings of every packed record are checked together (``valid_mask`` over the
    batch); a record with any reading refused is checked again on its own
    (``validate_columns``), which words each reason, so the outcome is a record's verdicts
    whichever way it went. Counters and dead letters come out in stream order.
    """
    parts = [_decode_part(record, shard_id, window, catalog) for record in records]
    return _check_parts(parts, shard_id=shard_id, window=window, catalog=catalog)


def _decode_part(
    record: StreamRecord, shard_id: str, window: TimeWindow, catalog: SignalCatalog
) -> _Part:
    # Two kinds of record, told apart by an explicit marker, not by a guess: the gateway
    # envelope starts with its fixed 40-byte text GATEWAY_ENVELOPE_PREFIX; a packed record
    # (stream/records.py) starts with its format version byte, FORMAT_V1 = b"\x01", and
    # decode_record refuses any other first byte, so neither can be taken for the other.
    if record.data.startswith(GATEWAY_ENVELOPE_PREFIX):
        body = Decoded()
        devices = _decode_json_body(record, shard_id, window, body, catalog)
        return _Part(record.sequence, devices, checked=True, refused=body)
    try:
        columns = decode_record(record.data)
    except UndecodableRecordError as exc:
        refused = Decoded()
        if record.data.lstrip(_JSON_LEAD)[:1] == b"{":
            # a raw body without the envelope: what the removed POST /ingest wrote. No
            # path facility came with it, so nothing says IAM allowed its writer that
            # facility: refused as a whole, like a body naming another facility.
            refused.counters[("_unknown", "forbidden_records")] += 1
            refused.dead_letters.append(
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
        else:
            refused.counters[("_unknown", "undecodable_records")] += 1
            refused.dead_letters.append(
                DeadLetter(
                    shard_id,
                    record.sequence,
                    None,
                    ErrorCode.UNDECODABLE_RECORD,
                    str(exc)[:500],
                    record.data,
                )
            )
        return _Part(record.sequence, [], checked=True, refused=refused)
    return _Part(record.sequence, [columns], checked=False)


_NO_SIGNALS = FixedCatalog({})  # refuses every name


class _Tables:
    """The validation tables of every (facility, metric list) of a batch side by side, so
    that one index into them (a record's offset plus its metric index) checks any row."""

    def __init__(self, catalog: SignalCatalog) -> None:
        self.catalog = catalog
        self.offsets: dict[tuple[str | None, tuple[str, ...]], int] = {}
        self.parts: list[MetricTables] = []
        self.ints: list[npt.NDArray[np.bool_]] = []  # per table: which metrics are int64
        self.size = 0

    def offset(self, facility: str, metrics: list[str], *, known: bool = True) -> int:
        """Where the tables of ``facility``'s ``metrics`` start; ``known=False``: tables
        that know no signal, without asking the catalog (a record whose facility or device
        is not an allowed identifier is refused whole: no look-up for a junk name)."""
        key = (facility if known else None, tuple(metrics))
        found = self.offsets.get(key)
        if found is None:
            tables = metric_tables(self.catalog if known else _NO_SIGNALS, facility, metrics)
            found = self.offsets[key] = self.size
            self.parts.append(tables)
            self.ints.append(
                np.array(
                    [spec is not None and spec.value_type is ValueType.INT64 for spec in tables[0]]
                )
            )
            self.size += len(tables[0])
        return found

    def joined(self) -> tuple[MetricTables, npt.NDArray[np.bool_]]:
        known: list[SignalDef | None] = []
        for part in self.parts:
            known.extend(part[0])
        numeric, low, high, want = (
            np.concatenate([part[i] for part in self.parts]) for i in range(1, 5)
        )
        return (known, numeric, low, high, want), np.concatenate(self.ints)


def _check_parts(
    parts: list[_Part], *, shard_id: str, window: TimeWindow, catalog: SignalCatalog
) -> Decoded:
    """The batch check of ``decode_records``: one mask over every packed record's readings."""
    out = Decoded()
    devices = [(part, columns) for part in parts for columns in part.devices]
    if not devices:
        for part in parts:
            _merge(out, part.refused)
        return out
    tables = _Tables(catalog)
    lens = np.array([len(columns) for _, columns in devices], dtype=np.intp)
    offsets, sizes, received, plain, checked = [], [], [], [], []
    for part, columns in devices:
        # a junk facility or device: tables that know no signal refuse every reading of it
        valid = is_valid_id(columns.facility) and is_valid_id(columns.device)  # (cached)
        offsets.append(tables.offset(columns.facility, columns.metrics, known=valid))
        sizes.append(len(columns.metrics))
        received.append(columns.received_us)
        plain.append(columns.vtype is None)
        checked.append(part.checked)
    record = np.repeat(np.arange(len(devices), dtype=np.intp), lens)
    metric_idx = np.concatenate([columns.metric_idx for _, columns in devices])
    ts_us = np.concatenate([columns.ts_us for _, columns in devices])
    values = np.concatenate([columns.values for _, columns in devices])
    quality = np.concatenate([columns.quality for _, columns in devices])
    received_us = np.array(received, dtype=np.int64)[record]
    joined, is_int = tables.joined()
    idx = (
        np.array(offsets, dtype=np.intp)[record]
        + np.minimum(metric_idx, np.array(sizes, dtype=np.intp)[record])
    ).astype(np.intp)
    typed = _typed_rows(
        devices, plain=plain, checked=checked, record=record, idx=idx, is_int=is_int, values=values
    )
    vtype, ints, texts, qcode = typed if typed is not None else (None, None, None, None)
    row_type = vtype if vtype is not None else np.zeros(len(ts_us), dtype=np.uint8)
    ok = valid_mask(
        joined,
        idx,
        row_type,
        values=values,
        ts_us=ts_us,
        received_us=received_us,
        window=window,
        quality=quality,
        qcode=qcode,
        texts=texts,
    )
    trusted = np.array(checked)
    if trusted.any():
        ok |= trusted[record]  # a gateway body's readings were checked by its codec
    flat = Flat(
        [columns.facility for _, columns in devices],
        [columns.device for _, columns in devices],
        [columns.metrics for _, columns in devices],
        [part.sequence for part, _ in devices],
        record,
        metric_idx,
        ts_us,
        values,
        quality,
        received_us,
        vtype,
        ints,
        texts,
        qcode,
    )
    late = ts_us < received_us - LATE_AFTER_US
    starts = np.cumsum(lens) - lens
    refused_in = np.bincount(record[~ok], minlength=len(devices)).tolist()
    keep = ok
    ints_memo: dict[tuple[str, tuple[str, ...]], npt.NDArray[np.bool_] | None] = {}
    tables_memo: dict[tuple[str, tuple[str, ...]], MetricTables] = {}
    counters = out.counters
    d = 0
    for part in parts:
        _merge(out, part.refused)
        for columns in part.devices:
            n = len(columns)
            if part.checked:  # counted by its codec already
                d += 1
                continue
            facility = columns.facility[:64]
            counters[(facility, "received")] += n
            if refused_in[d]:  # checked again on its own: the reasons, and the same mask
                a = int(starts[d])
                mask = _check_record(
                    out,
                    columns,
                    shard_id=shard_id,
                    window=window,
                    catalog=catalog,
                    ints_memo=ints_memo,
                    tables_memo=tables_memo,
                    facility=facility,
                    sequence=part.sequence,
                )
                keep[a : a + n] = mask
            else:
                counters[(facility, "accepted")] += n
            d += 1
    kept_late = np.bincount(record[keep & late], minlength=len(devices)).tolist()
    for d, (part, columns) in enumerate(devices):
        if kept_late[d] and not part.checked:
            counters[(columns.facility[:64], "late")] += kept_late[d]
    out.flat = flat if bool(keep.all()) else flat.take(keep)
    return out


def _merge(out: Decoded, refused: Decoded | None) -> None:
    if refused is not None:
        out.dead_letters.extend(refused.dead_letters)
        out.counters.update(refused.counters)


def _typed_rows(
    devices: list[tuple[_Part, DeviceColumns]],
    *,
    plain: list[bool],
    checked: list[bool],
    record: npt.NDArray[np.intp],
    idx: npt.NDArray[np.intp],
    is_int: npt.NDArray[np.bool_],
    values: npt.NDArray[np.float64],
) -> (
    tuple[
        npt.NDArray[np.uint8],
        npt.NDArray[np.int64],
        npt.NDArray[np.object_],
        npt.NDArray[np.int64],
    ]
    | None
):
    """The batch's typed columns (None: every record plain doubles, none of an int64
    signal): typed records' own, and a plain record's integral values of an int64 signal
    as exact int64 (``_typed_from_doubles``, column-wise)."""
    plain_rows = np.array(plain)[record] & ~np.array(checked)[record]
    convert = plain_rows & is_int[idx]
    if all(plain) and not convert.any():
        return None
    n = len(idx)
    vtype = np.zeros(n, dtype=np.uint8)
    ints = np.zeros(n, dtype=np.int64)
    texts = np.full(n, None, dtype=object)
    qcode = np.full(n, -1, dtype=np.int64)
    if not all(plain):
        a = 0
        for _, columns in devices:
            b = a + len(columns)
            # a typed record has all four columns (``decode_record``)
            if (
                columns.vtype is not None
                and columns.ints is not None
                and columns.texts is not None
                and columns.qcode is not None
            ):
                vtype[a:b] = columns.vtype
                ints[a:b] = columns.ints
                texts[a:b] = columns.texts
                qcode[a:b] = columns.qcode
            a = b
    rows = np.flatnonzero(convert)
    picked = values[rows]
    exact = (np.abs(picked) <= 2.0**53) & (np.floor(picked) == picked)  # NaN, inf: False
    vtype[rows[exact]] = INT_CODE
    ints[rows[exact]] = picked[exact].astype(np.int64)
    return vtype, ints, texts, qcode


def _check_record(
    out: Decoded,
    columns: DeviceColumns,
    *,
    shard_id: str,
    window: TimeWindow,
    catalog: SignalCatalog,
    ints_memo: dict[tuple[str, tuple[str, ...]], npt.NDArray[np.bool_] | None],
    tables_memo: dict[tuple[str, tuple[str, ...]], MetricTables],
    facility: str,
    sequence: str,
) -> npt.NDArray[np.bool_]:
    """One record with a refused reading, checked on its own: its accepted count, and a
    dead letter with the reason of each refused reading. Returns its mask."""
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
    counters = out.counters
    counters[(facility, "accepted")] += len(columns) - len(rejects)
    for index, error in rejects:
        counters[(facility, f"rejected:{error.code}")] += 1
        counters[(facility, "rejected")] += 1
        out.dead_letters.append(
            DeadLetter(
                shard_id,
                sequence,
                facility,
                str(error.code),
                error.message,
                _json.encode(_as_dict(facility, columns.reading(index))),
            )
        )
    return ok


def _decode_json_body(
    record: StreamRecord,
    shard_id: str,
    window: TimeWindow,
    out: Decoded,
    catalog: SignalCatalog = DEFAULT_CATALOG,
) -> list[DeviceColumns]:
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
        return []
    except InvalidInputError as exc:
        out.counters[("_unknown", "undecodable_records")] += 1
        out.dead_letters.append(
            DeadLetter(shard_id, record.sequence, None, str(exc.code), exc.message, record.data)
        )
        return []
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
    return _device_columns(facility, received, batch.readings)


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
