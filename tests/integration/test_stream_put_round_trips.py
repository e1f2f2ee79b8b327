"""A put is one round trip to Redis, and survives the server forgetting its scripts.

redis-py's script pipelining asks ``SCRIPT EXISTS`` before every pipeline: a second round trip
per ingest request, part of the ingest regression of the redesign (bench/results/redesign_ab.json).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from plantstream.stream import RedisStream
from plantstream.stream.base import PutEntry


@pytest.fixture
def stream(redis_url: str) -> Iterator[RedisStream]:
    stream = RedisStream(redis.Redis.from_url(redis_url), "round-trips", retention_hours=0)
    stream.create(4)
    yield stream
    stream.close()


def _calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def _entries(n: int) -> list[PutEntry]:
    return [PutEntry(f"plant-01/device-{i}", f"record {i}".encode()) for i in range(n)]


def test_a_put_over_several_shards_asks_nothing_before_its_scripts(
    stream: RedisStream, redis_client: redis.Redis
) -> None:
    stream.put(_entries(40))  # the script is loaded now
    exists, evalsha = _calls(redis_client, "script|exists"), _calls(redis_client, "evalsha")
    ids = stream.put(_entries(40))
    assert len(ids) == 40
    assert _calls(redis_client, "script|exists") == exists  # no extra round trip
    assert _calls(redis_client, "evalsha") - evalsha == 4  # one script call per shard


def test_a_put_after_the_server_forgot_its_scripts_loads_them_and_stores_each_record_once(
    stream: RedisStream, redis_client: redis.Redis
) -> None:
    stream.put(_entries(8))
    redis_client.script_flush()  # what a restart of Redis without persistence of scripts does
    ids = stream.put(_entries(8))
    assert len(ids) == 8
    stored = sum(
        len(stream.read(shard.shard_id, None, 1000).records) for shard in stream.list_shards()
    )
    # the first attempt ran no script at all (NOSCRIPT on each), so nothing doubled
    assert stored == 16
