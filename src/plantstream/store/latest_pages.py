"""Bounded reads of the Redis "latest" hashes: their size, one device's values, one page.

The hashes are written by ``store/hot.py`` (same key and field layout); these reads never
fetch more than a caller's bound, whatever a facility's size.
"""

from __future__ import annotations

import redis

from plantstream.model import METRICS
from plantstream.store.hot import LatestValue, latest_field, latest_key, split_field, unpack_latest


def latest_count(client: redis.Redis, facility: str) -> int:
    """How many sensors of ``facility`` have a latest value (one O(1) call)."""
    return int(client.hlen(latest_key(facility)))


def device_latest(client: redis.Redis, facility: str, device: str) -> list[LatestValue]:
    """The latest values of one device: one field per known metric, never the whole hash."""
    names = sorted(METRICS)
    packed: list[bytes | None] = client.hmget(  # type: ignore[assignment]
        latest_key(facility), [latest_field(device, m) for m in names]
    )
    return [
        unpack_latest(device, m, raw)
        for m, raw in zip(names, packed, strict=True)
        if raw is not None
    ]


def latest_page(
    client: redis.Redis, facility: str, *, cursor: int, count: int
) -> tuple[list[LatestValue], int]:
    """About ``count`` latest values from ``cursor`` (0 to start) and the next cursor (0: done).

    Redis' HSCAN cursor: every value present for the whole walk is returned at least once
    (a value updated meanwhile may come twice); a page is sorted by device and metric.
    """
    next_cursor, raw = client.hscan(latest_key(facility), cursor=cursor, count=count)
    fields: dict[bytes, bytes] = raw  # type: ignore[assignment]  # decode_responses=False
    values = []
    for field, packed in fields.items():
        values.append(unpack_latest(*split_field(field), packed))
    values.sort(key=lambda v: (v.device, v.metric))
    return values, int(next_cursor)
