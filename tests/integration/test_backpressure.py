"""Push-back a gateway can act on: every 429 carries a code saying who pushed and a
Retry-After, and nothing of a refused batch is in the stream."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fixtures.api import Api
from psycopg_pool import ConnectionPool

from plantstream.api.state import RateLimiter
from plantstream.local.ports import free_port


def batch(reading: dict[str, Any]) -> dict[str, Any]:
    return {"facility": "plant-01", "readings": [reading]}


def stream_length(api: Api) -> int:
    return sum(
        int(api.stream.client.xlen(api.stream.shard_key(s.shard_id)))
        for s in api.stream.list_shards()
    )


@pytest.fixture
def full_redis(redis_client: redis.Redis) -> Iterator[Callable[[bool], None]]:
    """Switch Redis' maxmemory so that writes fail with OOM (True) or succeed (False)."""
    before = redis_client.config_get("maxmemory")["maxmemory"]
    policy = redis_client.config_get("maxmemory-policy")["maxmemory-policy"]

    def set_full(full: bool) -> None:
        if full:
            redis_client.config_set("maxmemory-policy", "noeviction")
            redis_client.config_set("maxmemory", 1)
        else:
            redis_client.config_set("maxmemory", before)

    try:
        yield set_full
    finally:
        redis_client.config_set("maxmemory", before)
        redis_client.config_set("maxmemory-policy", policy)


def test_a_full_stream_answers_429_stream_full_and_takes_nothing(
    api: Api, make_reading: Callable[..., dict[str, Any]], full_redis: Callable[[bool], None]
) -> None:
    key = api.make_key("ingest")
    full_redis(True)
    refused = api.client.post("/v1/readings", json=batch(make_reading()), headers=api.headers(key))
    full_redis(False)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "stream_full"
    assert int(refused.headers["Retry-After"]) >= 1
    assert stream_length(api) == 0

    retried = api.client.post("/v1/readings", json=batch(make_reading()), headers=api.headers(key))
    assert retried.status_code == 202
    assert stream_length(api) == 1


def test_a_key_over_its_rate_gets_429_rate_limited(
    api: Api, make_reading: Callable[..., dict[str, Any]]
) -> None:
    key = api.make_key("ingest")
    api.state.limiter = RateLimiter(0.5)  # a burst of one, then one every two seconds
    first = api.client.post("/v1/readings", json=batch(make_reading()), headers=api.headers(key))
    second = api.client.post("/v1/readings", json=batch(make_reading()), headers=api.headers(key))
    assert first.status_code == 202
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limited"
    assert int(second.headers["Retry-After"]) >= 1
    assert stream_length(api) == 1


def test_postgresql_away_answers_a_prompt_503_not_a_hang_or_500(
    api: Api, make_reading: Callable[..., dict[str, Any]]
) -> None:
    key = api.make_key("ingest")  # keys are checked in PostgreSQL on every request here
    unreachable = ConnectionPool(
        f"postgresql://127.0.0.1:{free_port()}/nowhere", min_size=0, max_size=1, open=False
    )
    unreachable.open(wait=False)
    real, api.state.pool = api.state.pool, unreachable
    try:
        answer = api.client.post(
            "/v1/readings", json=batch(make_reading()), headers=api.headers(key)
        )
        ready = api.client.get("/readyz")
    finally:
        api.state.pool = real
        unreachable.close()
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "database_unavailable"
    assert int(answer.headers["Retry-After"]) >= 1
    assert ready.status_code == 503
    assert stream_length(api) == 0


def test_redis_away_answers_live_reads_a_503_not_a_500(api: Api) -> None:
    key = api.make_key("read")
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=1)
    real = api.state.redis
    api.state.redis = unreachable
    api.state.__dict__.pop("hot", None)  # the hot state is built from the client on first use
    try:
        answer = api.client.get("/v1/latest?facility=plant-01", headers=api.headers(key))
    finally:
        api.state.redis = real
        api.state.__dict__.pop("hot", None)
        unreachable.close()
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "redis_unavailable"
    assert int(answer.headers["Retry-After"]) >= 1
