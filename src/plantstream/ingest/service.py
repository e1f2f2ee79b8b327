"""The ingest service: admit a sender, decode its payload, authorize, pack, put, count.

No HTTP here: an adapter (``api/ingest.py`` today, MQTT later) reads the payload, calls
``admit`` and ``accept``, and shapes the answer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from plantstream.errors import AuthError, ErrorCode, OverloadedError, RateLimitedError
from plantstream.ingest.admission import InflightGate, RateLimiter
from plantstream.ingest.codecs import CODECS, CodecRegistry
from plantstream.ingest.metrics import INGESTED, PUSHED_BACK, count_refusal, facility_label
from plantstream.ingest.partitioning import pack
from plantstream.ingest.quotas import IngestQuotas
from plantstream.ingest.unclassified import register_unknown
from plantstream.model import ParsedBatch, Reject, TimeWindow, now_us
from plantstream.model.signals import DEFAULT_CATALOG, SignalCatalog, per_batch
from plantstream.store.keys import Principal, Role
from plantstream.stream.base import PutEntry, StreamProducer

# while the stream's puts take this long or less (a moving average), they run on the adapter's
# event loop: the thread hop around them costs more than the wait it spares the loop
# (bench/results/ingest.json ``ingest_per_reading_2026-12-01``)
INLINE_PUT_SECONDS = 0.002
# after a slower or failed put, puts go to a thread this long, then one is tried on the loop
# (a Kinesis put then holds the loop for one round trip in 5 s: about 1% of its time)
THREADED_PUT_SECONDS = 5.0
# each put's weight in the average: one put 20x the bound (a Kinesis round trip) tips it, a
# scheduling hiccup of a few milliseconds on a busy machine does not
_PUT_WEIGHT = 0.05


@dataclass(frozen=True, slots=True)
class Accepted:
    """What ingest took: ``accepted`` readings are durably in the stream; ``rejected`` not."""

    facility: str
    accepted: int
    rejected: list[Reject] = field(default_factory=list)


@dataclass(slots=True)
class Prepared:
    """A decoded, authorized batch packed into stream records, not yet put (``prepare``)."""

    facility: str
    entries: list[PutEntry]
    tokens: int  # readings-rate tokens taken for it, given back unless it is put
    rejected: list[Reject]
    accepted: int = 0


class IngestService:
    """Readings in, stream records out; every refusal is a typed error with a code.

    ``admit`` may raise a push-back error (``RateLimitedError``, ``OverloadedError``) before
    a payload is even read; ``accept`` raises ``InvalidInputError`` for a payload that is
    not a batch, ``AuthError`` for a facility the key does not own, ``RateLimitedError``
    (``quota_readings_rate``) for a facility past its readings/s, ``RateLimitedError``
    (``quota_backlog``) for one whose readings wait unprocessed past its bound, and the stream's own
    ``StreamThrottledError`` / ``StreamUnavailableError``: in each case nothing was accepted.
    Readings for new sensors past the facility's sensor quota are rejected one by one
    (``quota_sensors``), the others accepted.
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
        quotas: IngestQuotas | None = None,
        catalog: SignalCatalog = DEFAULT_CATALOG,
    ) -> None:
        self.catalog = catalog  # each facility's signals (store/catalog.py StoreCatalog)
        self.stream = stream
        self.window = window
        self.max_readings = max_readings
        self.limiter = limiter
        self.gate = gate
        self.codecs = codecs
        self.quotas = quotas if quotas is not None else IngestQuotas()
        self._put_seconds = 0.0  # moving average of the puts made on the loop
        self._threaded_until = 0.0  # monotonic: until then, commit_inline() is no

    @contextlib.contextmanager
    def admit(self, who: Principal) -> Iterator[None]:
        """Hold one of the in-work slots for ``who``'s request, or push back at once."""
        authorize_writer(who)
        wait = self.limiter.admit(who.key_id)
        if wait:
            PUSHED_BACK.labels(ErrorCode.RATE_LIMITED).inc()
            raise RateLimitedError("too many requests for this key", retry_after=wait)
        if who.facility is not None:
            # a facility already past its rate or its backlog is turned away before its body
            # is even read
            self._check_readings_rate(who.facility, 1, take=False)
            if self.quotas.backlog is not None:
                self.quotas.backlog.check(who.facility)
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

        Returns once the stream holds every accepted reading durably. The same as
        ``commit(prepare(...))``; an adapter on an event loop runs ``prepare`` on the loop
        and only ``commit`` (which waits on the stream) in a thread.
        """
        return self.commit(self.prepare(who, payload, fmt))

    def prepare(self, who: Principal, payload: bytes, fmt: str = "json") -> Prepared:
        """Everything of ``accept`` but the put: decode, authorize, quotas, pack. CPU only.

        Why split: in one process the decode is CPU under the GIL wherever it runs; run in a
        worker thread it only adds GIL hand-offs with the event loop (a fifth more server
        CPU per reading, bench/results/redesign_ab.json), while the put waits on the network
        and belongs in a thread. Takes the readings' rate tokens: pass the result to
        ``commit`` (which gives them back if the put fails) or to ``release``.
        """
        codec = self.codecs.get(fmt)
        received = now_us()
        # the facility's signals looked up once per batch (another's never: it gets a 403)
        catalog = per_batch(self.catalog, who.may_access)
        batch = codec.decode(
            payload,
            received_us=received,
            window=self.window,
            max_readings=self.max_readings,
            catalog=catalog,
        )
        indexes = _valid_indexes(batch)
        if who.may_access(batch.facility):  # a stranger's batch registers nothing
            batch, indexes = register_unknown(catalog, self.catalog, batch, indexes)
        return self._prepare_batch(who, batch, received, indexes)

    def _prepare_batch(
        self, who: Principal, batch: ParsedBatch, received: int, indexes: list[int]
    ) -> Prepared:
        """Authorize, apply the quotas and pack a decoded batch (``indexes``: the request
        index of each of ``batch.readings``, for the per-reading refusals)."""
        if not who.may_access(batch.facility):
            raise AuthError(
                ErrorCode.FORBIDDEN_FACILITY, "this key does not belong to that facility"
            )
        facility = batch.facility
        readings, rejected = batch.readings, batch.rejected
        if readings and self.quotas.backlog is not None:
            self.quotas.backlog.check(facility)
        if readings:
            self._check_readings_rate(facility, len(readings), take=True)
        prepared = Prepared(facility, [], len(batch.readings), [])
        try:
            if readings and self.quotas.sensors is not None:
                readings, refused = self.quotas.sensors.admit(facility, readings, indexes)
                if refused:
                    for code in {r.code for r in refused}:
                        n = sum(1 for r in refused if r.code is code)
                        count_refusal(code, facility, n)
                    rejected = sorted(rejected + refused, key=lambda r: r.index)
            prepared.entries = pack(facility, received, readings) if readings else []
        except BaseException:
            self.release(prepared)
            raise
        prepared.accepted = len(readings)
        prepared.rejected = rejected
        return prepared

    def commit_inline(self) -> bool:
        """Whether an adapter on an event loop should call ``commit_on_loop`` rather than run
        ``commit`` in a thread: yes unless a put on the loop was slow or failed lately."""
        return time.monotonic() >= self._threaded_until

    def commit_on_loop(self, prepared: Prepared) -> Accepted:
        """``commit``, run on the adapter's event loop, timed.

        While puts are fast (a moving average within ``INLINE_PUT_SECONDS``: Redis next door)
        the thread hop costs more CPU than the wait it spares the loop. Once the average is
        past it, or a put fails, ``commit_inline`` says no for ``THREADED_PUT_SECONDS`` (so a
        slow stream, Kinesis or a loaded Redis, holds the loop for one put in that time), then
        puts are tried on the loop again. Puts made in a thread are not timed: their wall time
        holds the wait for the interpreter lock, the very cost being avoided.
        """
        started = time.monotonic()
        try:
            accepted = self.commit(prepared)
        except BaseException:
            self._to_threads()
            raise
        if prepared.entries:
            self._put_seconds += (time.monotonic() - started - self._put_seconds) * _PUT_WEIGHT
            if self._put_seconds > INLINE_PUT_SECONDS:
                self._to_threads()
        return accepted

    def _to_threads(self) -> None:
        self._put_seconds, self._threaded_until = 0.0, time.monotonic() + THREADED_PUT_SECONDS

    def commit(self, prepared: Prepared) -> Accepted:
        """Put what ``prepare`` packed; blocking until the stream holds it durably."""
        try:
            if prepared.entries:
                self.stream.put(prepared.entries)
        except BaseException:
            self.release(prepared)
            raise
        if self.quotas.backlog is not None:
            self.quotas.backlog.added(prepared.facility, prepared.accepted)
        label = facility_label(prepared.facility)
        INGESTED.labels(label, "accepted").inc(prepared.accepted)
        if prepared.rejected:
            INGESTED.labels(label, "rejected").inc(len(prepared.rejected))
        return Accepted(prepared.facility, prepared.accepted, prepared.rejected)

    def release(self, prepared: Prepared) -> None:
        """Give back the rate tokens of a prepared batch that will not be put."""
        if self.quotas.readings is not None and prepared.tokens:
            self.quotas.readings.refund(prepared.facility, prepared.tokens)
            prepared.tokens = 0

    def accept_decoded(self, who: Principal, batch: ParsedBatch, *, received_us: int) -> Accepted:
        """Authorize and put readings an adapter decoded itself (MQTT: Sparkplug B, topic
        JSON), with the quotas of ``accept``; blocking, returns once the stream holds them.

        ``batch.rejected`` comes back in the answer and is counted, as for ``accept``. Under
        the ``register`` policy, its new unknown signals are recorded, as for ``accept``.
        """
        indexes = list(range(len(batch.readings)))
        if who.may_access(batch.facility):
            view = per_batch(self.catalog, who.may_access)
            for metric in {r.metric for r in batch.readings}:
                view.get(batch.facility, metric)  # notes the unknown ones
            batch, indexes = register_unknown(view, self.catalog, batch, indexes)
        return self.commit(self._prepare_batch(who, batch, received_us, indexes))

    def _check_readings_rate(self, facility: str, readings: int, *, take: bool) -> None:
        """429 ``quota_readings_rate`` if ``facility`` may not send ``readings`` more now."""
        limiter = self.quotas.readings
        if limiter is None:
            return
        wait = limiter.admit(facility, readings) if take else limiter.wait_for(facility, readings)
        if wait:
            count_refusal(ErrorCode.QUOTA_READINGS_RATE, facility)
            raise RateLimitedError(
                f"facility {facility!r} sends more than its quota of "
                f"{limiter.rate:g} readings/s (quota_readings_rate); nothing was accepted",
                retry_after=wait,
                code=ErrorCode.QUOTA_READINGS_RATE,
            )


def _valid_indexes(batch: ParsedBatch) -> list[int]:
    """The index in the request of each of ``batch.readings`` (the valid ones, in order)."""
    total = len(batch.readings) + len(batch.rejected)
    if not batch.rejected:
        return list(range(total))  # the usual batch: no loop per reading
    refused = {r.index for r in batch.rejected}
    return [i for i in range(total) if i not in refused]


def authorize_writer(who: Principal) -> None:
    """403 unless ``who`` may send readings (``ingest`` or ``admin``)."""
    if who.role not in (Role.INGEST, Role.ADMIN):
        raise AuthError(ErrorCode.FORBIDDEN_ROLE, f"a {who.role} key cannot send readings")
