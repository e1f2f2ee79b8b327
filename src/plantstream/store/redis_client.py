"""The one way plantstream opens Redis: a plain client or a Redis Cluster client.

Cluster mode is chosen by configuration (``redis_cluster``) or detected with ``INFO cluster``.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import RedisCluster

AnyRedis = redis.Redis | RedisCluster


def open_redis(
    url: str,
    *,
    cluster: bool | None = None,
    socket_timeout: float | None = 5.0,
    socket_connect_timeout: float | None = 2.0,
    **options: Any,
) -> AnyRedis:
    """A client for ``url``; ``cluster`` None means detect it from the server."""
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout}
    if cluster is None:
        probe = redis.Redis.from_url(url, **timeouts)
        try:
            cluster = probe.info("cluster").get("cluster_enabled") == 1
        finally:
            probe.close()
    if cluster:
        return RedisCluster.from_url(url, **timeouts, **options)
    return redis.Redis.from_url(url, **timeouts, **options)
