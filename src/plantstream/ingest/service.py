"""The ingest service: admit a sender, decode its payload, authorize, pack, put, count.

No HTTP here: an adapter (``api/ingest.py`` today, MQTT later) reads the payload, calls
``admit`` and ``accept``, and shapes the answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from plantstream.errors import AuthError, ErrorCode, OverloadedError, RateLimitedError
from plantstream.ingest.admission import InflightGate, RateLimiter
from plantstream.ingest.codecs import CODECS, CodecRegistry
from plantstream.ingest.metrics import INGESTED, PUSHED_BACK
from plantstream.ingest.partitioning import pack
from plantstream.model import Reject, TimeWindow, now_us
from plantstream.store.keys import Principal, Role
from plantstream.stream.base import StreamProducer


@dataclass(frozen=True, slots=True)
class Accepted:
    """What ingest took: ``accepted`` readings are durably in the stream; ``rejected`` not."""

    facility: str
    accepted: int
    rejected: list[Reject] = field(default_factory=list)


class IngestService:
    """Readings in, stream records out; every refusal is a typed error with a code.

    ``admit`` may raise a push-back error (``RateLimitedError``, ``OverloadedError``) before
    a payload is even read; ``accept`` raises ``InvalidInputError`` for a payload that is
    not a batch, ``AuthError`` for a facility the key does not own, and the stream's own
    ``StreamThrottledError`` / ``StreamUnavailableError``: in each case nothing was accepted.
    """

    def __init__(
        self,
        *,
        stream: StreamProducer,
        window: TimeWindow,
        max_readings: int,
        limiter: RateLimiter,
        gate: InflightGate,
        codecs: CodecRegistry = CODECS,
    ) -> None:
        self.stream = stream
        self.window = window
        self.max_readings = max_readings
        self.limiter = limiter
        self.gate = gate
        self.codecs = codecs

    @contextlib.contextmanager
    def admit(self, who: Principal) -> Iterator[None]:
        """Hold one of the in-work slots for ``who``'s request, or push back at once."""
        authorize_writer(who)
        wait = self.limiter.admit(who.key_id)
        if wait:
            PUSHED_BACK.labels(ErrorCode.RATE_LIMITED).inc()
            raise RateLimitedError("too many requests for this key", retry_after=wait)
        if not self.gate.try_enter():
            PUSHED_BACK.labels(ErrorCode.OVERLOADED).inc()
            raise OverloadedError(
                "the server is busy with as many batches as it holds; retry shortly",
                retry_after=1.0,
            )
        try:
            yield
        finally:
            self.gate.leave()

    def accept(self, who: Principal, payload: bytes, fmt: str = "json") -> Accepted:
        """Decode ``payload`` (a registered format), check its facility, put it; blocking.

        Returns once the stream holds every accepted reading durably.
        """
        codec = self.codecs.get(fmt)
        received = now_us()
        batch = codec.decode(
            payload, received_us=received, window=self.window, max_readings=self.max_readings
        )
        if not who.may_access(batch.facility):
            raise AuthError(
                ErrorCode.FORBIDDEN_FACILITY, "this key does not belong to that facility"
            )
        if batch.readings:
            self.stream.put(pack(batch.facility, received, batch.readings))
        INGESTED.labels(batch.facility, "accepted").inc(len(batch.readings))
        if batch.rejected:
            INGESTED.labels(batch.facility, "rejected").inc(len(batch.rejected))
        return Accepted(batch.facility, len(batch.readings), batch.rejected)


def authorize_writer(who: Principal) -> None:
    """403 unless ``who`` may send readings (``ingest`` or ``admin``)."""
    if who.role not in (Role.INGEST, Role.ADMIN):
        raise AuthError(ErrorCode.FORBIDDEN_ROLE, f"a {who.role} key cannot send readings")
