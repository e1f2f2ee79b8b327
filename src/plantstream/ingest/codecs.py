"""Ingest formats: a registry of codecs, each turning a payload into a validated batch.

Adding a format is one module with a ``Codec`` and one ``CODECS.register(...)`` line below.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.ingest import line_protocol as _line_protocol
from plantstream.ingest.msgpack_batch import MsgpackBatchCodec
from plantstream.model import ParsedBatch, TimeWindow, check_id, parse_batch
from plantstream.model.signals import DEFAULT_CATALOG, SignalCatalog

# a Kinesis record holds at most 1 MiB, so a gateway body is bounded there, not here
GATEWAY_MAX_READINGS = 1_000_000


class Codec(Protocol):
    """Decodes one payload of its format into the readings of one facility.

    A payload that is not of the format at all raises ``InvalidInputError``; bad readings
    inside a good payload come back as per-reading ``Reject`` entries, by index. Signals are
    checked against ``catalog`` (the facility's definitions).
    """

    name: str

    def decode(
        self,
        payload: bytes,
        *,
        received_us: int,
        window: TimeWindow,
        max_readings: int,
        catalog: SignalCatalog = ...,
    ) -> ParsedBatch: ...


class JsonBatchCodec:
    """The ``POST /v1/readings`` body: ``{"facility": f, "readings": [{...}, ...]}``."""

    name = "json"
    media_types = ("application/json",)

    def decode(
        self,
        payload: bytes,
        *,
        received_us: int,
        window: TimeWindow,
        max_readings: int,
        catalog: SignalCatalog = DEFAULT_CATALOG,
    ) -> ParsedBatch:
        return parse_batch(
            payload,
            received_us=received_us,
            window=window,
            max_readings=max_readings,
            catalog=catalog,
        )


# What the API Gateway template (infra/plantstream_infra/ingest_api.py, PUT_RECORD_TEMPLATE)
# writes as the record's data for ``POST /ingest/{facility}``: the client's body, byte for byte,
# inside an envelope that carries the facility of the PATH (the one IAM authorised), i.e.
#   {"plantstream_gateway": 1, "facility": "<path facility>", "body": <raw body>}
# The prefix is fixed text, so the dispatch in processor/decode.py is by this marker.
GATEWAY_ENVELOPE_PREFIX = b'{"plantstream_gateway": 1, "facility": "'
_GATEWAY_BODY_AT = b'", "body": '
_UTF8_BOM = b"\xef\xbb\xbf"


class ForbiddenFacilityError(InvalidInputError):
    """A gateway record whose body names another facility than the path IAM authorised."""

    def __init__(self, path_facility: str | None, message: str) -> None:
        super().__init__(ErrorCode.FORBIDDEN_FACILITY, message)
        self.path_facility = path_facility  # a valid id, or None


def gateway_envelope(facility: str, body: bytes) -> bytes:
    """The record data the gateway template renders for ``body`` posted to ``/ingest/<facility>``
    (``facility`` escaped as ``$util.escapeJavaScript`` does for the characters JSON needs)."""
    escaped = facility.replace("\\", "\\\\").replace('"', '\\"')
    return GATEWAY_ENVELOPE_PREFIX + escaped.encode() + _GATEWAY_BODY_AT + body + b"}"


def open_gateway_envelope(payload: bytes) -> tuple[str, bytes]:
    """The path facility and the client's raw body of a gateway record.

    Parsed as the fixed text the template writes, not as JSON: the body is exactly the bytes
    between the prefix and the final ``}``, so a body cannot add keys to the envelope (a second
    ``"facility"`` after its own end) and must itself be one JSON document (``parse_batch``
    refuses trailing data). Raises ``InvalidInputError(undecodable_record)`` for anything else.
    """
    if not payload.startswith(GATEWAY_ENVELOPE_PREFIX) or not payload.endswith(b"}"):
        raise InvalidInputError(ErrorCode.UNDECODABLE_RECORD, "not a plantstream_gateway envelope")
    rest = payload[len(GATEWAY_ENVELOPE_PREFIX) : -1]
    end = rest.find(_GATEWAY_BODY_AT)
    if end < 0:
        raise InvalidInputError(
            ErrorCode.UNDECODABLE_RECORD, "gateway envelope without a facility and a body"
        )
    try:
        facility = rest[:end].decode()
    except UnicodeDecodeError:
        raise InvalidInputError(
            ErrorCode.UNDECODABLE_RECORD, "gateway envelope facility is not UTF-8"
        ) from None
    return facility, rest[end + len(_GATEWAY_BODY_AT) :]


class GatewayBodyCodec:
    """A client's JSON batch put on the stream by the API Gateway proxy, in its envelope.

    ``POST /ingest/{facility}`` is authorised by IAM per path, so the record carries the path
    facility beside the body (``gateway_envelope``). The body is the same as ``json``, validated
    the same way, and must name the path facility: a body for another facility is refused as a
    whole (``ForbiddenFacilityError``, ``forbidden_facility``), never stored. The body may start
    with JSON whitespace, and with a UTF-8 byte order mark, which RFC 8259 (8.1) lets a parser
    ignore: on this path the client has already had its 200 and could not learn of a refusal.
    Its size was already bounded by the stream record, so the batch limit of HTTP ingest does
    not apply.
    """

    name = "apigw"

    def decode(
        self,
        payload: bytes,
        *,
        received_us: int,
        window: TimeWindow,
        max_readings: int,
        catalog: SignalCatalog = DEFAULT_CATALOG,
    ) -> ParsedBatch:
        path_facility, body = open_gateway_envelope(payload)
        if body.startswith(_UTF8_BOM):
            body = body[len(_UTF8_BOM) :]
        batch = parse_batch(
            body,
            received_us=received_us,
            window=window,
            max_readings=max(max_readings, GATEWAY_MAX_READINGS),
            catalog=catalog,
        )
        if batch.facility != path_facility:
            raise ForbiddenFacilityError(
                _valid_or_none(path_facility),
                f"the body names facility {batch.facility!r} but was posted to "
                f"/ingest/{path_facility[:64]}; IAM authorised that path only",
            )
        return batch


def _valid_or_none(facility: str) -> str | None:
    try:
        check_id(facility, "facility")
    except InvalidInputError:
        return None
    return facility


class CodecRegistry:
    """Formats by name; the one place a format is looked up."""

    def __init__(self) -> None:
        self._codecs: dict[str, Codec] = {}
        self._by_media_type: dict[str, str] = {}

    def register(self, codec: Codec) -> Codec:
        """Add ``codec``; a ``media_types`` tuple on it names the HTTP ``Content-Type`` values
        that select it (``for_media_type``); a codec without one is chosen by name only."""
        if codec.name in self._codecs:
            raise ValueError(f"an ingest format {codec.name!r} is already registered")
        media_types: tuple[str, ...] = getattr(codec, "media_types", ())
        taken = [t for t in media_types if t in self._by_media_type]
        if taken:
            raise ValueError(f"media type {taken[0]!r} already selects another ingest format")
        self._codecs[codec.name] = codec
        for media_type in media_types:
            self._by_media_type[media_type] = codec.name
        return codec

    def for_media_type(self, content_type: str, default: str = "json") -> str:
        """The format a ``Content-Type`` header selects (parameters such as ``charset`` are
        ignored); ``default`` for one no codec claims, so clients that send JSON without the
        header, or as ``text/plain``, keep working as they always did."""
        media_type = content_type.partition(";")[0].strip().lower()
        return self._by_media_type.get(media_type, default)

    def get(self, name: str) -> Codec:
        """The codec of ``name``; ``InvalidInputError(unknown_format)`` if there is none."""
        try:
            return self._codecs[name]
        except KeyError:
            known = ", ".join(sorted(self._codecs))
            raise InvalidInputError(
                ErrorCode.UNKNOWN_FORMAT, f"unknown format {name[:40]!r}; known: {known}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._codecs)

    def __contains__(self, name: object) -> bool:
        return name in self._codecs


CODECS = CodecRegistry()
JSON = CODECS.register(JsonBatchCodec())
GATEWAY_BODY = CODECS.register(GatewayBodyCodec())
LINE = CODECS.register(_line_protocol.LineProtocolCodec())
MSGPACK = CODECS.register(MsgpackBatchCodec())
