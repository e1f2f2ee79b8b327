"""Backlog-aware admission: a facility whose readings wait unprocessed past its bound is refused
(429 ``quota_backlog``), so another facility never queues behind more than that bound; the
counters follow the processor's commits and forget their errors after their horizon."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis
from fixtures.pipeline import drain, stored_readings
from test_quotas import A, B, Quoted, body, quoted  # noqa: F401  (the fixture)

from plantstream.ingest.backlog import BacklogGate
from plantstream.processor import Processor, ProcessorConfig
from plantstream.processor.sinks.backlog import BacklogSink
from plantstream.store.backlog import IN, OUT, BacklogCounters

LIMIT = 1_000
BATCH = 500


@pytest.fixture
def backlogged(quoted: Callable[..., Quoted]) -> Quoted:  # noqa: F811
    return quoted(
        quota_backlog_readings=LIMIT,
        quota_readings_per_second=1e9,  # only the backlog bound holds A back here
        rate_limit_per_key=100_000,
        quota_max_sensors_per_facility=100_000,
        quota_new_sensors_per_second=100_000,
    )


@pytest.fixture
def processor(backlogged: Quoted, database_url: str, redis_url: str) -> Iterator[Processor]:
    """The processor as ``serve`` builds it for this quota: the backlog sink takes commits off."""
    counters = backlogged.state.ingest.quotas.backlog.counters  # type: ignore[union-attr]
    made = Processor(
        database_url=database_url,
        stream=backlogged.stream,
        sinks=[
            BacklogSink(
                BacklogCounters(
                    redis.Redis.from_url(redis_url),
                    window_seconds=counters.window_seconds,
                    horizon_windows=counters.horizon_windows,
                )
            )
        ],
        config=ProcessorConfig(stream_name=backlogged.stream.name),
    )
    yield made
    made.shutdown()


def _post(app: Quoted, facility: str, seq: int, writer: dict[str, str]) -> Any:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    devices = [f"{facility}-{seq}-{i}" for i in range(BATCH if facility == A else 1)]
    return app.client.post("/v1/readings", json=body(facility, devices, ts), headers=writer)


def test_a_flooder_is_refused_past_its_backlog_and_the_victim_queues_behind_no_more(
    backlogged: Quoted, processor: Processor, db: psycopg.Connection
) -> None:
    app = backlogged
    gate = app.state.ingest.quotas.backlog
    assert gate is not None
    writer_a, writer_b = app.key("ingest", A), app.key("ingest", B)
    answers = []
    for seq in range(10):  # no processor runs yet: every accepted reading of A stays backlog
        answers.append(_post(app, A, seq, writer_a))
        gate.flush()  # what the flusher thread does every 50 ms, here at once
    codes = [a.status_code for a in answers]
    # the batch that crosses the bound is taken; every one after it is refused whole
    assert codes == [202] * 3 + [429] * 7, codes
    refusal = answers[3].json()["error"]
    assert refusal["code"] == "quota_backlog"
    assert float(answers[3].headers["Retry-After"]) >= 1
    assert app.refused("quota_backlog", A) == 7
    # B is not held back by A's backlog, and is queued behind at most A's bound + one batch
    victim = _post(app, B, 0, writer_b)
    assert victim.status_code == 202
    assert victim.json()["accepted"] == 1
    ahead = sum(a.json()["accepted"] for a in answers if a.status_code == 202)
    assert ahead <= LIMIT + BATCH
    drain(processor)  # the processor stores everything the stream holds
    stored = stored_readings(db)
    assert sum(1 for f, *_ in stored if f == B) == 1
    assert sum(1 for f, *_ in stored if f == A) == ahead
    gate.flush()  # the commits came off A's backlog: A is let in again
    assert _post(app, A, 99, writer_a).status_code == 202
    assert app.refused("quota_backlog", B) == 0


def test_the_counters_follow_both_sides_and_forget_their_errors_after_the_horizon(
    redis_client: redis.Redis,
) -> None:
    now = [1_000_000.0]
    counters = BacklogCounters(
        redis_client, window_seconds=10, horizon_windows=3, clock=lambda: now[0]
    )
    assert counters.add(IN, {A: 700, B: 5}) == {A: 700, B: 5}
    assert counters.add(OUT, {A: 200}) == {A: 500}
    now[0] += 10  # the next window: the counts of the last still count
    assert counters.add(OUT, {B: 5}) == {B: 0}
    assert counters.backlog([A]) == {A: 500}
    # a commit counted before its put (the two sides race): negative for a moment, never lost
    assert counters.add(OUT, {B: 3}) == {B: -3}
    assert counters.add(IN, {B: 3}) == {B: 0}
    # 500 of A never come off (a re-sent batch stored once, a crash): after the horizon the
    # windows that held them are no longer counted, so the error does not stay for ever
    now[0] += 30
    assert counters.backlog([A, B]) == {A: 0, B: 0}
    assert all(0 < redis_client.ttl(key) <= 41 for key in redis_client.scan_iter("ps:backlog:*"))


def test_admission_is_off_with_a_bound_of_zero(quoted: Callable[..., Quoted]) -> None:  # noqa: F811
    app = quoted(quota_backlog_readings=0)
    assert app.state.ingest.quotas.backlog is None


def test_redis_down_warns_once_then_once_a_minute_and_counts_what_waited(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The flusher fails every 50 ms while Redis is down: one warning, not 20 a second; when
    Redis answers again it says so, and the readings accepted meanwhile are counted."""
    with socket.socket() as probe:  # a port nothing listens on: a real connection refusal
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    down = redis.Redis(port=closed_port, socket_connect_timeout=0.5)
    # the flusher thread waits an hour: the flushes here are the test's own, in order
    gate = BacklogGate(
        BacklogCounters(down), limit=LIMIT, flush_seconds=3600, warn_every_seconds=3600
    )
    with caplog.at_level(logging.WARNING, logger="plantstream.ingest.backlog"):
        gate.added(A, 300)
        for _ in range(20):
            gate.flush()
        assert gate.failed_flushes == 20
        unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(unavailable) == 1
        gate.counters = BacklogCounters(redis_client)
        gate.flush()
        gate.close()
    assert gate.failed_flushes == 0
    assert any("available again" in r.getMessage() for r in caplog.records)
    assert BacklogCounters(redis_client).backlog([A]) == {A: 300}
