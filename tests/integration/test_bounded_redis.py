"""Redis stays bounded: no command grows with a facility's size, the stream holds only
what is not processed yet, and a full Redis refuses with 429 ``stream_full``, never by dropping.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from fixtures.api import Api
from fixtures.pipeline import Produced, drain, produce, simulated_readings, stored_readings
from fixtures.redis_cluster import (  # noqa: F401 - fixtures used by name
    cluster_client,
    redis_cluster,
    redis_cluster_server,
)

from plantstream.errors import ErrorCode, StreamThrottledError
from plantstream.local import EmbeddedRedis
from plantstream.model import Reading, now_us
from plantstream.processor import Processor, metrics
from plantstream.store.hot import HotState
from plantstream.store.partitions import ensure_partitions
from plantstream.stream import RedisStream, pack_readings
from plantstream.stream.base import PutEntry
from plantstream.stream.redis_streams import REFUSED_FULL

MakeProcessor = Callable[..., Processor]
METRICS = [
    "temperature",
    "pressure",
    "vibration_rms",
    "spindle_speed",
    "production_count",
    "current",
    "power",
    "humidity",
]
BIG = 400_000  # more than the 349,525 sensors one Redis command can carry (1,048,576 args)


def _step_until_caught_up(processor: Processor, deadline_s: float) -> float:
    started = time.monotonic()
    while processor.sinks.behind():
        processor.step()
        assert time.monotonic() - started < deadline_s, (
            f"sinks {processor.sinks.behind()} still behind after {deadline_s} s"
        )
    return time.monotonic() - started


def _registry_with_latest(
    db: psycopg.Connection, facility: str, sensors: int, ts: datetime
) -> None:
    """``sensors`` sensors of ``facility`` with one reading each, straight into PostgreSQL."""
    db.execute(
        "INSERT INTO sensors (facility, device, metric, unit) "
        "SELECT %s, 'dev-' || (n / 8), (%s::text[])[n %% 8 + 1], 'x' FROM generate_series(0, %s) n",
        (facility, METRICS, sensors - 1),
    )
    db.execute(
        "INSERT INTO readings (sensor_id, ts, value, quality) "
        "SELECT id, %s, id, 0 FROM sensors WHERE facility = %s",
        (ts, facility),
    )


def test_a_facility_of_400k_sensors_survives_a_restart_with_latest_live_for_everyone(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
) -> None:
    ts = datetime.now(UTC).replace(microsecond=0)
    ensure_partitions(db, [ts.date()])
    _registry_with_latest(db, "plant-big", BIG, ts)
    _registry_with_latest(db, "plant-small", 16, ts)
    redis_client.flushdb()  # Redis lost its data: the restarted processor rebuilds from the store
    stream.create(4)

    processor = make_processor(database_url, stream, redis_client)
    took = _step_until_caught_up(processor, deadline_s=120)
    hot = HotState(redis_client)
    assert redis_client.hlen("ps:latest:plant-big") == BIG
    assert len(hot.latest("plant-small")) == 16
    big = hot.latest("plant-big", f"dev-{BIG // 8 - 1}")  # HSCAN: a bounded reply whatever the size
    assert [(v.metric, v.ts_us) for v in big] == [
        (metric, int(ts.timestamp() * 1e6)) for metric in sorted(METRICS)
    ]
    # and the live path runs again for every facility
    fresh = Reading("dev-1", "pressure", now_us(), 123.0, 0)
    stream.put(pack_readings("plant-small", now_us(), [fresh]))
    drain(processor)
    values = {v.metric: v.value for v in hot.latest("plant-small", "dev-1")}
    assert values["pressure"] == 123.0
    logging.getLogger(__name__).info("rebuild of %d sensors took %.1f s", BIG + 16, took)


def test_a_failed_rebuild_is_logged_counted_and_retried(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ts = datetime.now(UTC).replace(microsecond=0)
    ensure_partitions(db, [ts.date()])
    _registry_with_latest(db, "plant-01", 40, ts)
    before = redis_client.config_get("maxmemory")["maxmemory"]
    errors = metrics.ERRORS.labels("redis")._value.get()
    processor = make_processor(database_url, stream, redis_client)
    try:
        redis_client.config_set("maxmemory", 1)  # every write refused (noeviction)
        with caplog.at_level(logging.WARNING):
            processor.step()
    finally:
        redis_client.config_set("maxmemory", before)
    assert processor.sinks.behind() == ["redis"]
    assert metrics.ERRORS.labels("redis")._value.get() > errors
    assert metrics.SINK_BEHIND.labels("redis")._value.get() == 1
    assert any("sink redis failed" in r.getMessage() for r in caplog.records)
    _step_until_caught_up(processor, deadline_s=30)  # the backoff ran out, the retry worked
    assert len(HotState(redis_client).latest("plant-01")) == 40
    assert metrics.SINK_BEHIND.labels("redis")._value.get() == 0


def test_a_reading_from_the_future_does_not_pin_latest(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
) -> None:
    received = now_us()
    ahead = Reading("m1", "temperature", received + 540_000_000, 99.0, 0)  # 9 min: allowed
    stream.put(pack_readings("plant-01", received, [ahead]))
    processor = make_processor(database_url, stream, redis_client)
    drain(processor)
    hot = HotState(redis_client)
    assert [v.value for v in hot.latest("plant-01")] == [99.0]  # shown as it came
    # the next reading received later than the skew (5 s) takes its place
    later = received + 6_000_000
    stream.put(pack_readings("plant-01", later, [Reading("m1", "temperature", later, 20.0, 0)]))
    drain(processor)
    (value,) = hot.latest("plant-01")
    assert (value.value, value.ts_us) == (20.0, later)
    # the future reading is stored all the same
    assert stored_readings(db)[("plant-01", "m1", "temperature", ahead.ts_us)] == 99.0
    # a replay of the future one changes nothing
    stream.put(pack_readings("plant-01", received, [ahead]))
    drain(processor)
    assert hot.latest("plant-01")[0].value == 20.0


def _stream_entries(stream: RedisStream) -> int:
    return sum(int(stream.client.xlen(stream.shard_key(s.shard_id))) for s in stream.list_shards())


def _stream_bytes(stream: RedisStream) -> int:
    return sum(
        int(stream.client.memory_usage(stream.shard_key(s.shard_id), samples=0) or 0)
        for s in stream.list_shards()
    )


def test_the_stream_is_trimmed_to_what_the_processor_committed(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
) -> None:
    produced = Produced({})
    produce(stream, simulated_readings(seconds=120), produced)
    entries, size = _stream_entries(stream), _stream_bytes(stream)
    assert entries > 200
    assert size > 100_000
    processor = make_processor(database_url, stream, redis_client, trim_every=0.0)
    drain(processor)
    assert stored_readings(db) == produced.readings  # everything was processed first
    assert _stream_entries(stream) == 0
    assert _stream_bytes(stream) < size / 20  # the keys' skeletons are left, not the data
    logging.getLogger(__name__).info(
        "stream before processing: %d entries, %d bytes; after: %d entries, %d bytes",
        entries,
        size,
        _stream_entries(stream),
        _stream_bytes(stream),
    )
    # what comes after is read and trimmed as well
    produce(stream, simulated_readings(seconds=5, seed=2), produced)
    drain(processor)
    assert stored_readings(db) == produced.readings
    assert _stream_entries(stream) == 0


def test_a_shard_at_its_cap_refuses_new_puts_and_drops_nothing(
    redis_client: redis.Redis,
) -> None:
    stream = RedisStream(redis_client, "capped", retention_hours=0, max_entries_per_shard=5)
    stream.create(1)
    stream.put([PutEntry(f"plant-01/{n}", b"x") for n in range(5)])
    counted = REFUSED_FULL.labels("shard_cap")._value.get()
    with pytest.raises(StreamThrottledError) as refused:
        stream.put([PutEntry("plant-01/late", b"y")])
    assert refused.value.code is ErrorCode.STREAM_FULL
    assert REFUSED_FULL.labels("shard_cap")._value.get() == counted + 1
    (shard,) = stream.list_shards()
    result = stream.read(shard.shard_id, None, 100)
    assert [r.data for r in result.records] == [b"x"] * 5  # nothing made room
    # once processed (and trimmed), it takes puts again
    stream.trim(shard.shard_id, result.records[-1].sequence)
    stream.put([PutEntry("plant-01/late", b"y")])
    assert [r.data for r in stream.read(shard.shard_id, None, 100).records] == [b"y"]


def test_ingest_into_a_shard_at_its_cap_answers_429_stream_full(
    api: Api, make_reading: Callable[..., dict[str, Any]]
) -> None:
    key = api.make_key("ingest")
    api.stream.max_entries_per_shard = 1
    body = {"facility": "plant-01", "readings": [make_reading()]}
    assert api.client.post("/v1/readings", json=body, headers=api.headers(key)).status_code == 202
    refused = api.client.post("/v1/readings", json=body, headers=api.headers(key))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "stream_full"
    assert _stream_entries(api.stream) == 1


@pytest.fixture
def small_redis() -> Iterator[redis.Redis]:
    home = Path(tempfile.mkdtemp(prefix="plantstream-test-small-redis-"))
    server = EmbeddedRedis(home, fsync="everysec", maxmemory_mb=16)
    server.start()
    client = redis.Redis.from_url(server.url())
    try:
        yield client
    finally:
        client.close()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_the_embedded_redis_has_a_memory_cap_that_answers_stream_full(
    small_redis: redis.Redis,
) -> None:
    config = small_redis.config_get("maxmemory*")
    assert int(config["maxmemory"]) == 16 * 1024 * 1024
    assert config["maxmemory-policy"] == "noeviction"
    stream = RedisStream(small_redis, "readings", retention_hours=0)
    stream.create(2)
    accepted, refused = 0, None
    for n in range(64):  # 64 MiB offered to a 16 MiB server
        try:
            stream.put([PutEntry(f"plant-01/{n}", b"z" * (1 << 20))])
        except StreamThrottledError as exc:
            refused = exc
            break
        accepted += 1
    assert refused is not None
    assert refused.code is ErrorCode.STREAM_FULL
    assert 0 < accepted < 16
    assert _stream_entries(stream) == accepted  # nothing accepted was evicted


def test_chunks_trimming_and_the_cap_work_on_a_cluster(
    cluster_client: redis.Redis,  # noqa: F811
    database_url: str,
    db: psycopg.Connection,
    make_processor: MakeProcessor,
) -> None:
    hot = HotState(cluster_client, chunk=3)  # many chunks per facility, several nodes
    rows = [
        (f"plant-{f}", f"dev-{n}", "temperature", 1_000 + n, float(n), 0)
        for f in range(6)
        for n in range(20)
    ]
    assert hot.update_latest(rows) == 120
    assert hot.update_latest(rows) == 0
    assert len(hot.latest("plant-3")) == 20
    stream = RedisStream(cluster_client, "readings", retention_hours=0, max_entries_per_shard=0)
    stream.create(4)
    produced = Produced({})
    produce(stream, simulated_readings(seconds=20), produced)
    drain(make_processor(database_url, stream, cluster_client, trim_every=0.0))
    assert stored_readings(db) == produced.readings
    assert _stream_entries(stream) == 0
    stream.max_entries_per_shard = 1
    stream.put([PutEntry("plant-01/a", b"x")])
    with pytest.raises(StreamThrottledError):
        stream.put([PutEntry("plant-01/a", b"y")])
