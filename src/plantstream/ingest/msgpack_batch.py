"""The binary batch for gateways: the JSON batch's fields, in MessagePack.

``POST /v1/readings`` with ``Content-Type: application/msgpack``: a map
``{"facility": f, "readings": [{"device", "metric", "ts", "value"[, "unit"][, "quality"]}]}``,
the same fields, types and rules as the JSON body. ``ts`` is a MessagePack timestamp (the
``-1`` extension, what ``msgpack.Timestamp`` / ``msgspec`` write for a datetime) or an RFC 3339
string with an offset. Validation is the JSON batch's own (``model.validate_batch``), so every
reading gets the same per-reading codes; only the decoding differs.

MessagePack maps may repeat a key, and the decoder keeps the last, like JSON's: a reading whose
map holds more entries than distinct fields is refused ``duplicate_key`` (a whole body whose
outer map does, likewise), exactly as the JSON path refuses ``{"value": 1, "value": 999}``.
"""

from __future__ import annotations

import struct

import msgspec

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.model import ParsedBatch, TimeWindow
from plantstream.model.readings import BatchIn, ReadingIn, Reject, validate_batch
from plantstream.model.signals import DEFAULT_CATALOG, SignalCatalog

MEDIA_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


class _LooseBatch(msgspec.Struct, forbid_unknown_fields=True):
    facility: str
    readings: list[msgspec.Raw]


_batch_decoder = msgspec.msgpack.Decoder(BatchIn)
_loose_decoder = msgspec.msgpack.Decoder(_LooseBatch)
_reading_decoder = msgspec.msgpack.Decoder(ReadingIn)
_encoder = msgspec.msgpack.Encoder()
_REQUIRED_FIELDS = 4  # device, metric, ts, value


def map_size(data: bytes | memoryview) -> int | None:
    """The entry count of the MessagePack map ``data`` starts with; None if it is no map."""
    if not data:
        return None
    head = data[0]
    if 0x80 <= head <= 0x8F:  # fixmap
        return head & 0x0F
    if head == 0xDE and len(data) >= 3:  # map 16
        return int(struct.unpack_from(">H", data, 1)[0])
    if head == 0xDF and len(data) >= 5:  # map 32
        return int(struct.unpack_from(">I", data, 1)[0])
    return None


def _fields(reading: ReadingIn) -> int:
    return (
        _REQUIRED_FIELDS
        + (reading.unit is not msgspec.UNSET)
        + (reading.quality is not msgspec.UNSET)
        + (reading.quality_code is not msgspec.UNSET)
    )


def _duplicate(raw: msgspec.Raw, reading: ReadingIn) -> bool:
    return map_size(memoryview(raw)) != _fields(reading)


def _any_duplicate(raws: list[msgspec.Raw], readings: list[ReadingIn]) -> bool:
    """True if a reading's map holds more entries than the fields it decoded to.

    The common reading is a fixmap of its four fields: one byte compared, no parsing.
    """
    unset = msgspec.UNSET
    for data, reading in zip(map(bytes, raws), readings, strict=True):
        if (
            data[0] == 0x84
            and reading.unit is unset
            and reading.quality is unset
            and (reading.quality_code is unset)
        ):
            continue
        if map_size(data) != _fields(reading):
            return True
    return False


class MsgpackBatchCodec:
    """``application/msgpack``: the JSON batch's fields in MessagePack (see the module)."""

    name = "msgpack"
    media_types = MEDIA_TYPES

    def decode(
        self,
        payload: bytes,
        *,
        received_us: int,
        window: TimeWindow,
        max_readings: int,
        catalog: SignalCatalog = DEFAULT_CATALOG,
    ) -> ParsedBatch:
        facility, items = self._items(payload)
        return validate_batch(
            facility,
            items,
            received_us=received_us,
            window=window,
            max_readings=max_readings,
            catalog=catalog,
        )

    def _items(self, payload: bytes) -> tuple[str, list[ReadingIn | Reject]]:
        batch: BatchIn | None
        try:  # the fast path: every reading well-typed, decoded in one C call
            batch = _batch_decoder.decode(payload)
        except (msgspec.DecodeError, RecursionError):
            batch = None  # one bad reading spoils it: decode reading by reading below
        if batch is not None and batch.readings and _encoder.encode(batch) == payload:
            # the body is byte for byte what its batch encodes to, which names each field
            # once: no key repeats, and no reading's map needs looking at (what msgspec and
            # most MessagePack libraries write, for a tenth of the cost of the look)
            return batch.facility, list(batch.readings)
        try:
            loose = _loose_decoder.decode(payload)
        except msgspec.ValidationError as exc:
            raise InvalidInputError(ErrorCode.INVALID_BODY, f"invalid body: {exc}") from None
        except (msgspec.DecodeError, RecursionError) as exc:
            raise InvalidInputError(
                ErrorCode.INVALID_BODY, f"body is not valid MessagePack: {exc}"
            ) from None
        if map_size(payload) != 2:
            raise InvalidInputError(
                ErrorCode.DUPLICATE_KEY, "the body names 'facility' or 'readings' more than once"
            )
        if batch is not None and batch.readings:
            readings = batch.readings
            if not _any_duplicate(loose.readings, readings):
                return batch.facility, list(readings)
        items: list[ReadingIn | Reject] = []
        for index, raw in enumerate(loose.readings):
            try:
                reading = _reading_decoder.decode(raw)
            except msgspec.DecodeError as exc:
                items.append(Reject(index, ErrorCode.INVALID_READING, str(exc)))
                continue
            except RecursionError:
                items.append(Reject(index, ErrorCode.INVALID_READING, "nested too deeply"))
                continue
            if _duplicate(raw, reading):
                items.append(
                    Reject(index, ErrorCode.DUPLICATE_KEY, "the reading names a key more than once")
                )
                continue
            items.append(reading)
        return loose.facility, items
