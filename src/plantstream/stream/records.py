"""Packing many readings into one stream record, versioned, compact (msgpack via msgspec).

A record holds readings of one device (one partition key) from one request; the first byte
is the format version so old records stay readable after a format change.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from plantstream.model import Reading
from plantstream.stream.base import PutEntry
from plantstream.stream.hashing import partition_key

FORMAT_V1 = b"\x01"
# Kinesis takes records up to 1 MiB (data plus partition key); stay well clear of it
MAX_RECORD_BYTES = 900 * 1024
_READING_BYTES_BOUND = 160  # msgpack of one reading with 64-char ids, generously


class RecordBatch(msgspec.Struct, array_like=True, frozen=True):
    """The body of one stream record."""

    facility: str
    received_us: int
    readings: list[Reading]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(RecordBatch)


class UndecodableRecordError(ValueError):
    """The bytes are not a record of a format this version knows."""


def encode_batch(batch: RecordBatch) -> bytes:
    return FORMAT_V1 + _encoder.encode(batch)


def decode_record(data: bytes) -> RecordBatch:
    if data[:1] != FORMAT_V1:
        raise UndecodableRecordError(f"unknown record format {data[:1]!r}")
    try:
        return _decoder.decode(memoryview(data)[1:])
    except msgspec.DecodeError as exc:
        raise UndecodableRecordError(str(exc)) from None


def pack_readings(facility: str, received_us: int, readings: Iterable[Reading]) -> list[PutEntry]:
    """One or more records per device, keeping each device's readings in request order."""
    by_device: dict[str, list[Reading]] = {}
    for reading in readings:
        by_device.setdefault(reading.device, []).append(reading)
    per_record = MAX_RECORD_BYTES // _READING_BYTES_BOUND
    entries = []
    for device, group in by_device.items():
        key = partition_key(facility, device)
        for start in range(0, len(group), per_record):
            chunk = group[start : start + per_record]
            entries.append(PutEntry(key, encode_batch(RecordBatch(facility, received_us, chunk))))
    return entries
