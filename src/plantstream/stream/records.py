"""Packing many readings into one stream record: versioned, compact, columnar.

A record holds the readings of one device (one partition key) from one request, as little-
endian column buffers the processor maps straight into numpy arrays without a loop per
reading. The first byte is the format version so old records stay readable after a change.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt

from plantstream.model import Reading
from plantstream.stream.base import PutEntry
from plantstream.stream.hashing import partition_key

FORMAT_V1 = b"\x01"
# Kinesis takes records up to 1 MiB (data plus partition key); stay well clear of it
MAX_RECORD_BYTES = 900 * 1024
_READING_BYTES = 18  # 1 metric index + 8 ts + 8 value + 1 quality
MAX_READINGS_PER_RECORD = MAX_RECORD_BYTES // _READING_BYTES - 64


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

    def __len__(self) -> int:
        return len(self.ts_us)

    def reading(self, i: int) -> Reading:
        index = int(self.metric_idx[i])
        metric = self.metrics[index] if index < len(self.metrics) else f"#{index}"
        return Reading(
            self.device, metric, int(self.ts_us[i]), float(self.values[i]), int(self.quality[i])
        )


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DeviceRecord)


class UndecodableRecordError(ValueError):
    """The bytes are not a record of a format this version knows."""


def decode_record(data: bytes) -> DeviceColumns:
    """The record's columns; raises ``UndecodableRecordError`` for anything malformed."""
    if data[:1] != FORMAT_V1:
        raise UndecodableRecordError(f"unknown record format {data[:1]!r}")
    try:
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
    except (msgspec.DecodeError, ValueError) as exc:
        raise UndecodableRecordError(str(exc)) from None
    n = len(columns.ts_us)
    if not (len(columns.metric_idx) == len(columns.values) == len(columns.quality) == n):
        raise UndecodableRecordError("record columns differ in length")
    return columns


def pack_readings(facility: str, received_us: int, readings: list[Reading]) -> list[PutEntry]:
    """One or more records per device, keeping each device's readings in request order.

    Built column-wise for the whole request, then sliced per device: no loop per reading
    beyond reading the fields out.
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
    values = np.array([r.value for r in readings], dtype="<f8")
    quality = np.array([r.quality for r in readings], dtype=np.uint8)
    order = np.argsort(device_code, kind="stable")  # stable: request order within a device
    bounds = np.searchsorted(device_code[order], np.arange(len(devices) + 1))
    metric_names = list(metrics)
    entries = []
    for device, code in devices.items():
        key = partition_key(facility, device)
        rows = order[bounds[code] : bounds[code + 1]]
        for start in range(0, len(rows), MAX_READINGS_PER_RECORD):
            chunk = rows[start : start + MAX_READINGS_PER_RECORD]
            record = DeviceRecord(
                facility,
                device,
                received_us,
                metric_names,
                metric_idx[chunk].tobytes(),
                ts_us[chunk].tobytes(),
                values[chunk].tobytes(),
                quality[chunk].tobytes(),
            )
            entries.append(PutEntry(key, FORMAT_V1 + _encoder.encode(record)))
    return entries
