"""Bounded reads of the Redis "latest" hashes: their size, one device's values, one page.

The hashes are written by ``store/hot.py`` (same key and field layout); these reads never
fetch more than a caller's bound, whatever a facility's size.
"""

from __future__ import annotations

import redis

from plantstream.store.hot import LatestValue, glob_escape, latest_key, split_field, unpack_latest


def latest_count(client: redis.Redis, facility: str) -> int:
    """How many sensors of ``facility`` have a latest value (one O(1) call)."""
    return int(client.hlen(latest_key(facility)))


def device_latest(client: redis.Redis, facility: str, device: str) -> list[LatestValue]:
    """The latest values of one device (any signals it has): its fields only, walked with
    ``HSCAN MATCH`` in bounded replies, never the whole hash in one."""
    seen: dict[bytes, bytes] = {}
    for field, packed in client.hscan_iter(
        latest_key(facility), match=glob_escape(device) + "\x1f*", count=1000
    ):
        seen[field] = packed
    values = []
    for field, packed in seen.items():
        dev, metric = split_field(field)
        if dev == device:
            values.append(unpack_latest(dev, metric, packed))
    values.sort(key=lambda v: v.metric)
    return values


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
