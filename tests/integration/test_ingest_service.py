"""The ingest service without HTTP: a payload in a registered format in, the stream out."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson
import pytest
import redis

from plantstream.errors import (
    AuthError,
    ErrorCode,
    InvalidInputError,
    OverloadedError,
    RateLimitedError,
)
from plantstream.ingest import CODECS, InflightGate, IngestService, RateLimiter
from plantstream.model import TimeWindow
from plantstream.store.keys import Principal, Role
from plantstream.stream import RedisStream, decode_record

WRITER = Principal("0123456789abcdef", Role.INGEST, "plant-01")


@pytest.fixture
def stream(redis_url: str) -> Iterator[RedisStream]:
    stream = RedisStream(redis.Redis.from_url(redis_url), "ingest-test", retention_hours=0)
    stream.create(2)
    yield stream
    stream.close()


def service(stream: RedisStream, *, rate: float = 1000.0, inflight: int = 4) -> IngestService:
    return IngestService(
        stream=stream,
        window=TimeWindow(),
        max_readings=100,
        limiter=RateLimiter(rate),
        gate=InflightGate(inflight),
    )


def records(stream: RedisStream) -> list[bytes]:
    return [
        r.data for s in stream.list_shards() for r in stream.read(s.shard_id, None, 1000).records
    ]


def test_a_batch_is_put_on_the_stream_and_bad_readings_come_back_by_index(
    stream: RedisStream, make_reading: Callable[..., dict]
) -> None:
    payload = orjson.dumps(
        {
            "facility": "plant-01",
            "readings": [make_reading(), make_reading(metric="temprature"), make_reading()],
        }
    )
    accepted = service(stream).accept(WRITER, payload, "json")
    assert (accepted.facility, accepted.accepted) == ("plant-01", 2)
    assert [(r.index, r.code) for r in accepted.rejected] == [(1, ErrorCode.UNKNOWN_METRIC)]
    [record] = records(stream)
    assert len(decode_record(record)) == 2


def test_nothing_is_put_for_another_facility_or_an_unknown_format(
    stream: RedisStream, make_reading: Callable[..., dict]
) -> None:
    payload = orjson.dumps({"facility": "plant-02", "readings": [make_reading()]})
    with pytest.raises(AuthError) as refused:
        service(stream).accept(WRITER, payload, "json")
    assert (refused.value.code, refused.value.status) == (ErrorCode.FORBIDDEN_FACILITY, 403)
    with pytest.raises(InvalidInputError) as unknown:
        service(stream).accept(WRITER, payload, "protobuf")
    assert unknown.value.code is ErrorCode.UNKNOWN_FORMAT
    assert records(stream) == []
    assert {"json", "apigw"} <= set(CODECS)


def test_admission_pushes_back_with_a_code_before_any_payload_is_read(
    stream: RedisStream,
) -> None:
    limited = service(stream, rate=0.5)  # a burst of one
    with limited.admit(WRITER):
        pass
    with pytest.raises(RateLimitedError) as caught, limited.admit(WRITER):
        pass
    assert caught.value.code == "rate_limited"
    assert caught.value.retry_after > 0

    busy = service(stream, inflight=1)
    with busy.admit(WRITER):
        with pytest.raises(OverloadedError) as full, busy.admit(WRITER):
            pass
        assert full.value.code == "overloaded"
    with busy.admit(WRITER):  # the slot was given back
        assert busy.gate.inside == 1


def test_a_read_key_may_not_send(stream: RedisStream) -> None:
    reader = Principal("0123456789abcdef", Role.READ, "plant-01")
    with pytest.raises(AuthError) as refused, service(stream).admit(reader):
        pass
    assert refused.value.code is ErrorCode.FORBIDDEN_ROLE


def test_prepare_then_commit_is_accept_and_a_failed_put_gives_its_tokens_back(
    stream: RedisStream, make_reading: Callable[..., dict]
) -> None:
    from plantstream.ingest.quotas import IngestQuotas

    limiter = RateLimiter(0.001, burst=10.0)  # no refill while the test runs
    ingest = IngestService(
        stream=stream,
        window=TimeWindow(),
        max_readings=100,
        limiter=RateLimiter(1000.0),
        gate=InflightGate(4),
        quotas=IngestQuotas(readings=limiter),
    )
    payload = orjson.dumps(
        {"facility": "plant-01", "readings": [make_reading(), make_reading(metric="nope")]}
    )
    prepared = ingest.prepare(WRITER, payload, "json")
    assert records(stream) == []  # nothing is put before commit
    accepted = ingest.commit(prepared)
    assert (accepted.accepted, [r.index for r in accepted.rejected]) == (1, [1])
    assert len(records(stream)) == 1
    assert limiter.wait_for("plant-01", 9) == 0  # 9 of 10 tokens left
    prepared = ingest.prepare(WRITER, payload, "json")
    ingest.stream = _Broken()
    with pytest.raises(RuntimeError):
        ingest.commit(prepared)
    assert limiter.wait_for("plant-01", 9) == 0  # the failed batch's token came back


class _Broken:
    def put(self, entries: object) -> list[str]:
        raise RuntimeError("the stream went away")


def test_puts_run_on_the_loop_while_fast_and_in_a_thread_after_a_slow_or_failed_one(
    stream: RedisStream, redis_url: str, make_reading: Callable[..., dict]
) -> None:
    ingest = service(stream)
    payload = orjson.dumps({"facility": "plant-01", "readings": [make_reading()]})
    for _ in range(20):  # Redis next door: each put well within the bound
        assert ingest.commit_inline()
        assert ingest.commit_on_loop(ingest.prepare(WRITER, payload, "json")).accepted == 1
    assert ingest.commit_inline()
    # Redis holds every write for 100 ms (server-wide, briefly): one such put tips the average
    redis.Redis.from_url(redis_url).execute_command("CLIENT", "PAUSE", "100", "WRITE")
    assert ingest.commit_on_loop(ingest.prepare(WRITER, payload, "json")).accepted == 1
    assert not ingest.commit_inline()
    assert ingest.commit(ingest.prepare(WRITER, payload, "json")).accepted == 1  # a thread's
    assert not ingest.commit_inline()
    assert len(records(stream)) == 22

    again = service(stream)
    again.stream = _Broken()
    with pytest.raises(RuntimeError):
        again.commit_on_loop(again.prepare(WRITER, payload, "json"))
    assert not again.commit_inline()
