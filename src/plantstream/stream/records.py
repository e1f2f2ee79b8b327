"""Packing many readings into one stream record: versioned, compact, columnar.

A record holds the readings of one device (one partition key) from one request, as little-
endian column buffers the processor maps straight into numpy arrays without a loop per
reading. The first byte is the format version so old records stay readable after a change:
version 1 holds doubles only (and is still what a batch of plain doubles is packed as, so the
common record is byte for byte what it was); version 2 adds a value-type byte per reading,
exact int64 values, the text values in order and the source's quality codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from plantstream.model import Reading, ValueType
from plantstream.model.values import (
    BOOL_CODE,
    DOUBLE_CODE,
    INT_CODE,
    TEXT_CODES,
    TEXT_LUT,
    TYPE_CODES,
    TYPES_BY_CODE,
    typed_at,
)
from plantstream.stream.base import PutEntry
from plantstream.stream.hashing import partition_key

FORMAT_V1 = b"\x01"
FORMAT_V2 = b"\x02"
# Kinesis takes records up to 1 MiB (data plus partition key); stay well clear of it
MAX_RECORD_BYTES = 900 * 1024
_READING_BYTES = 18  # 1 metric index + 8 ts + 8 value + 1 quality
MAX_READINGS_PER_RECORD = MAX_RECORD_BYTES // _READING_BYTES - 64
# version 2 adds 1 type + 8 int + 8 quality code per reading, plus the text (bounded by the
# signal's max_length, 256 characters of up to 4 bytes each by default: budgeted as 1 KiB)
_TYPED_READING_BYTES = _READING_BYTES + 17
MAX_TEXT_BYTES_PER_READING = 1024
NO_QUALITY_CODE = -1


class DeviceRecord(msgspec.Struct, array_like=True, frozen=True):
    """The body of one stream record: one device's readings, column-wise."""

    facility: str
    device: str
    received_us: int
    metrics: list[str]  # the metric names the indexes below refer to
    metric_idx: bytes  # uint8 per reading
    ts_us: bytes  # int64 little-endian, microseconds since the epoch
    values: bytes  # float64 little-endian, canonical unit
    quality: bytes  # uint8: 0 good, 1 uncertain, 2 bad


class TypedDeviceRecord(msgspec.Struct, array_like=True, frozen=True):
    """Version 2: the columns of version 1 and the typed ones beside them."""

    facility: str
    device: str
    received_us: int
    metrics: list[str]
    metric_idx: bytes
    ts_us: bytes
    values: bytes  # float64: a double; an int64 or bool as a number too (detection reads it)
    quality: bytes
    vtype: bytes  # uint8 per reading: model/values.py TYPE_CODES
    ints: bytes  # int64 little-endian per reading: the exact value of an int64
    texts: list[str]  # the value of each string/state reading, in order
    qcode: bytes  # int64 little-endian per reading: the source's quality code, -1 for none


@dataclass(frozen=True, slots=True)
class DeviceColumns:
    """A decoded record with its columns as (read-only) numpy arrays."""

    facility: str
    device: str
    received_us: int
    metrics: list[str]
    metric_idx: npt.NDArray[np.uint8]
    ts_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    quality: npt.NDArray[np.uint8]
    # typed columns (None: every value a double, no quality codes: a version 1 record)
    vtype: npt.NDArray[np.uint8] | None = None
    ints: npt.NDArray[np.int64] | None = None
    texts: npt.NDArray[np.object_] | None = None  # per reading: its text, or None
    qcode: npt.NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return len(self.ts_us)

    def reading(self, i: int) -> Reading:
        index = int(self.metric_idx[i])
        metric = self.metrics[index] if index < len(self.metrics) else f"#{index}"
        code = DOUBLE_CODE if self.vtype is None else int(self.vtype[i])
        value = typed_at(code, float(self.values[i]), self.ints, self.texts, i)
        qcode = None if self.qcode is None or self.qcode[i] < 0 else int(self.qcode[i])
        return Reading(
            self.device,
            metric,
            int(self.ts_us[i]),
            value,
            int(self.quality[i]),
            TYPES_BY_CODE[code] if code < len(TYPES_BY_CODE) else ValueType.DOUBLE,
            qcode,
        )

    def subset(self, mask: npt.NDArray[np.bool_]) -> DeviceColumns:
        """The readings where ``mask`` is true, every column alike."""
        return DeviceColumns(
            self.facility,
            self.device,
            self.received_us,
            self.metrics,
            self.metric_idx[mask],
            self.ts_us[mask],
            self.values[mask],
            self.quality[mask],
            None if self.vtype is None else self.vtype[mask],
            None if self.ints is None else self.ints[mask],
            None if self.texts is None else self.texts[mask],
            None if self.qcode is None else self.qcode[mask],
        )


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DeviceRecord)
_typed_decoder = msgspec.msgpack.Decoder(TypedDeviceRecord)


class UndecodableRecordError(ValueError):
    """The bytes are not a record of a format this version knows."""


def decode_record(data: bytes) -> DeviceColumns:
    """The record's columns; raises ``UndecodableRecordError`` for anything malformed."""
    version = data[:1]
    if version not in (FORMAT_V1, FORMAT_V2):
        raise UndecodableRecordError(f"unknown record format {data[:1]!r}")
    try:
        if version == FORMAT_V1:
            record = _decoder.decode(memoryview(data)[1:])
            columns = DeviceColumns(
                record.facility,
                record.device,
                record.received_us,
                record.metrics,
                np.frombuffer(record.metric_idx, dtype=np.uint8),
                np.frombuffer(record.ts_us, dtype="<i8").astype(np.int64, copy=False),
                np.frombuffer(record.values, dtype="<f8").astype(np.float64, copy=False),
                np.frombuffer(record.quality, dtype=np.uint8),
            )
        else:
            columns = _typed_columns(_typed_decoder.decode(memoryview(data)[1:]))
    except (msgspec.DecodeError, ValueError) as exc:
        raise UndecodableRecordError(str(exc)) from None
    n = len(columns.ts_us)
    if not (len(columns.metric_idx) == len(columns.values) == len(columns.quality) == n):
        raise UndecodableRecordError("record columns differ in length")
    return columns


def _typed_columns(record: TypedDeviceRecord) -> DeviceColumns:
    vtype = np.frombuffer(record.vtype, dtype=np.uint8)
    n = len(vtype)
    text_rows = np.flatnonzero(TEXT_LUT[vtype])
    if len(text_rows) != len(record.texts):
        raise ValueError("record texts do not match its text readings")
    texts = np.full(n, None, dtype=object)
    texts[text_rows] = record.texts
    ints = np.frombuffer(record.ints, dtype="<i8").astype(np.int64, copy=False)
    qcode = np.frombuffer(record.qcode, dtype="<i8").astype(np.int64, copy=False)
    if not (len(ints) == len(qcode) == n):
        raise ValueError("record typed columns differ in length")
    return DeviceColumns(
        record.facility,
        record.device,
        record.received_us,
        record.metrics,
        np.frombuffer(record.metric_idx, dtype=np.uint8),
        np.frombuffer(record.ts_us, dtype="<i8").astype(np.int64, copy=False),
        np.frombuffer(record.values, dtype="<f8").astype(np.float64, copy=False),
        np.frombuffer(record.quality, dtype=np.uint8),
        vtype,
        ints,
        texts,
        qcode,
    )


_DOUBLE = ValueType.DOUBLE


def _is_plain(readings: list[Reading]) -> bool:
    """Every reading a double without a source quality code: version 1 holds them."""
    return all(r.value_type is _DOUBLE and r.quality_code is None for r in readings)


def pack_readings(facility: str, received_us: int, readings: list[Reading]) -> list[PutEntry]:
    """One or more records per device, keeping each device's readings in request order.

    Built column-wise for the whole request, put in device order once, then cut into each
    device's contiguous run: no loop per reading beyond reading the fields out.
    """
    if not readings:
        return []
    devices: dict[str, int] = {}
    metrics: dict[str, int] = {}
    device_code = np.array([devices.setdefault(r.device, len(devices)) for r in readings])
    metric_idx = np.array(
        [metrics.setdefault(r.metric, len(metrics)) for r in readings], dtype=np.uint8
    )
    if len(metrics) > 255:
        raise ValueError("at most 255 metrics per request")
    ts_us = np.array([r.ts_us for r in readings], dtype="<i8")
    plain = _is_plain(readings)
    if plain:
        values = np.array([r.value for r in readings], dtype="<f8")
        per_record = MAX_READINGS_PER_RECORD
    else:
        typed = _typed_arrays(readings)
        values = typed[0]
        texts_bytes = max((len(t) for t in typed[3] if t is not None), default=0) * 4
        per_record = (
            MAX_RECORD_BYTES
            // (_TYPED_READING_BYTES + min(texts_bytes, MAX_TEXT_BYTES_PER_READING))
            - 64
        )
    quality = np.array([r.quality for r in readings], dtype=np.uint8)
    typed_columns: tuple[npt.NDArray[Any], ...] = () if plain else typed[1:]
    if len(devices) > 1:  # each device's readings one run, in request order (stable)
        order = np.argsort(device_code, kind="stable")
        metric_idx, ts_us, values, quality = (
            metric_idx[order],
            ts_us[order],
            values[order],
            quality[order],
        )
        typed_columns = tuple(column[order] for column in typed_columns)
    # each device's run: sliced, not gathered again per device and column
    ends = np.cumsum(np.bincount(device_code, minlength=len(devices))).tolist()
    metric_names = list(metrics)
    entries = []
    start = 0
    for device, end in zip(devices, ends, strict=True):
        key = partition_key(facility, device)
        for first in range(start, end, per_record):
            rows = slice(first, min(first + per_record, end))
            head = (
                facility,
                device,
                received_us,
                metric_names,
                metric_idx[rows].tobytes(),
                ts_us[rows].tobytes(),
                values[rows].tobytes(),
                quality[rows].tobytes(),
            )
            if typed_columns:
                vtype, ints, texts, qcode = typed_columns
                typed_record = TypedDeviceRecord(
                    *head,
                    vtype[rows].tobytes(),
                    ints[rows].tobytes(),
                    [t for t in texts[rows].tolist() if t is not None],
                    qcode[rows].tobytes(),
                )
                entries.append(PutEntry(key, FORMAT_V2 + _encoder.encode(typed_record)))
            else:
                entries.append(PutEntry(key, FORMAT_V1 + _encoder.encode(DeviceRecord(*head))))
        start = end
    return entries


def _typed_arrays(
    readings: list[Reading],
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.uint8],
    npt.NDArray[np.int64],
    npt.NDArray[np.object_],
    npt.NDArray[np.int64],
]:
    """The typed columns of a request: numeric view, type code, exact int, text, quality code."""
    n = len(readings)
    values = np.zeros(n, dtype="<f8")
    vtype = np.zeros(n, dtype=np.uint8)
    ints = np.zeros(n, dtype="<i8")
    texts = np.full(n, None, dtype=object)
    qcode = np.full(n, NO_QUALITY_CODE, dtype="<i8")
    for i, r in enumerate(readings):
        code = TYPE_CODES[r.value_type]
        vtype[i] = code
        value = r.value
        if code in TEXT_CODES:
            texts[i] = value
        elif code == INT_CODE:
            ints[i] = value
            values[i] = float(value)
        elif code == BOOL_CODE:
            values[i] = 1.0 if value else 0.0
        else:
            values[i] = value
        if r.quality_code is not None:
            qcode[i] = r.quality_code
    return values, vtype, ints, texts, qcode
