"""Ingest formats: a registry of codecs, each turning a payload into a validated batch.

Adding a format is one module with a ``Codec`` and one ``CODECS.register(...)`` line below.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.model import ParsedBatch, TimeWindow, parse_batch

# a Kinesis record holds at most 1 MiB, so a gateway body is bounded there, not here
GATEWAY_MAX_READINGS = 1_000_000


class Codec(Protocol):
    """Decodes one payload of its format into the readings of one facility.

    A payload that is not of the format at all raises ``InvalidInputError``; bad readings
    inside a good payload come back as per-reading ``Reject`` entries, by index.
    """

    name: str

    def decode(
        self, payload: bytes, *, received_us: int, window: TimeWindow, max_readings: int
    ) -> ParsedBatch: ...


class JsonBatchCodec:
    """The ``POST /v1/readings`` body: ``{"facility": f, "readings": [{...}, ...]}``."""

    name = "json"

    def decode(
        self, payload: bytes, *, received_us: int, window: TimeWindow, max_readings: int
    ) -> ParsedBatch:
        return parse_batch(
            payload, received_us=received_us, window=window, max_readings=max_readings
        )


class GatewayBodyCodec:
    """A client's JSON batch put on the stream as it is by the API Gateway proxy.

    The same body as ``json``, validated the same way when the processor reads it; its size
    was already bounded by the stream record, so the batch limit of HTTP ingest does not apply.
    """

    name = "apigw"

    def decode(
        self, payload: bytes, *, received_us: int, window: TimeWindow, max_readings: int
    ) -> ParsedBatch:
        return parse_batch(
            payload,
            received_us=received_us,
            window=window,
            max_readings=max(max_readings, GATEWAY_MAX_READINGS),
        )


class CodecRegistry:
    """Formats by name; the one place a format is looked up."""

    def __init__(self) -> None:
        self._codecs: dict[str, Codec] = {}

    def register(self, codec: Codec) -> Codec:
        if codec.name in self._codecs:
            raise ValueError(f"an ingest format {codec.name!r} is already registered")
        self._codecs[codec.name] = codec
        return codec

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
