"""A flood of made-up keys does not reach PostgreSQL: a refused key is remembered for a few
seconds (bounded, by digest), so one unknown key costs one lookup per that time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from fixtures.api import SERVER_SECRET

from plantstream.api import AppState, create_app
from plantstream.api.state import KeyCache, RateLimiter, open_pool
from plantstream.errors import AuthError, ErrorCode
from plantstream.model import TimeWindow
from plantstream.settings import load_settings
from plantstream.store.keys import Principal, Role, create_key, parse_key, revoke_key
from plantstream.stream import RedisStream

UNKNOWN = "ps_0123456789abcdef_" + "x" * 43
TTL = 5.0


class CountingPool:
    """The real pool, counting the connections taken from it (the seam ``AppState`` takes)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.taken = 0

    def connection(self, *args: Any, **kwargs: Any) -> Any:
        self.taken += 1
        return self.pool.connection(*args, **kwargs)

    def close(self) -> None:
        self.pool.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def flooded(
    database_url: str, redis_url: str, db: psycopg.Connection
) -> Iterator[tuple[TestClient, CountingPool, Clock]]:
    clock = Clock()
    pool = CountingPool(open_pool(database_url, max_size=2))
    stream = RedisStream(redis.Redis.from_url(redis_url), "readings", retention_hours=0)
    state = AppState(
        settings=load_settings(),
        pool=pool,  # type: ignore[arg-type]
        redis=redis.Redis.from_url(redis_url),
        stream=stream,
        server_secret=SERVER_SECRET,
        window=TimeWindow(),
        keys=KeyCache(TTL, negative_ttl_seconds=TTL, clock=clock),
        limiter=RateLimiter(100_000.0),
    )
    with TestClient(create_app(state), raise_server_exceptions=False) as client:
        yield client, pool, clock
    state.close()
    stream.close()


def _latest(client: TestClient, key: str) -> Any:
    return client.get(
        "/v1/latest", params={"facility": "plant-01"}, headers={"Authorization": f"Bearer {key}"}
    )


def test_a_flood_of_one_unknown_key_is_one_lookup_per_ttl(
    flooded: tuple[TestClient, CountingPool, Clock], db: psycopg.Connection
) -> None:
    client, pool, clock = flooded
    for _ in range(200):
        answer = _latest(client, UNKNOWN)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "invalid_key"
    assert pool.taken == 1
    clock.now += TTL + 0.1  # the refusal is forgotten: one more lookup, then cached again
    for _ in range(50):
        assert _latest(client, UNKNOWN).status_code == 401
    assert pool.taken == 2

    # a real key is not held up by the refusals of another, and a revoked one keeps its code
    key, _ = create_key(db, server_secret=SERVER_SECRET, role=Role.READ, facility="plant-01")
    assert _latest(client, key).status_code == 200
    revoked, _ = create_key(db, server_secret=SERVER_SECRET, role=Role.READ, facility="plant-01")
    assert revoke_key(db, parse_key(revoked)[0])
    for _ in range(20):
        assert _latest(client, revoked).json()["error"]["code"] == "revoked_key"
    assert pool.taken == 4


def test_malformed_keys_take_no_connection(
    flooded: tuple[TestClient, CountingPool, Clock],
) -> None:
    client, pool, _ = flooded
    for key in ("ps_short", "x" * 200, "ps_0123456789abcdef_" + "x" * 129, "ps_XYZ_abc"):
        assert _latest(client, key).json()["error"]["code"] == "malformed_key"
    assert pool.taken == 0


def test_the_cache_is_bounded_and_keeps_no_key_text() -> None:
    cache = KeyCache(TTL, negative_ttl_seconds=TTL, max_entries=100)
    refused = AuthError(ErrorCode.INVALID_KEY, "the API key is not valid")
    for i in range(5000):
        cache.refuse(f"ps_{i:016x}_" + "y" * 43, refused)
        cache.put(f"ps_{i:016x}_" + "z" * 43, Principal(f"{i:016x}", Role.READ, "plant-01"))
    assert len(cache) == 200
    with pytest.raises(AuthError) as newest:
        cache.get(f"ps_{4999:016x}_" + "y" * 43)
    assert newest.value.code == "invalid_key"
    assert cache.get(f"ps_{0:016x}_" + "y" * 43) is None  # the oldest went first
    assert "yyyy" not in repr(vars(cache))
