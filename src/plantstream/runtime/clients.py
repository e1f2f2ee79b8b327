"""The clients every role opens, each opened in exactly one place: Redis, the key secret.

Redis clients are made only by ``open_redis``, so cluster support is one change here.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.credentials import CredentialProvider

from plantstream.local.ports import remembered_secret
from plantstream.settings import Settings
from plantstream.store.redis_client import open_redis as store_open_redis

# each client's options, written once (and in full, whatever open_redis defaults to): the
# stream's reads of an idle shard may block, the other clients must never hang
REDIS_OPTIONS: dict[str, dict[str, object]] = {
    "state": {"socket_timeout": 5, "socket_connect_timeout": None},
    "processor": {"socket_timeout": 5, "socket_connect_timeout": 2},
    "stream": {"socket_timeout": None, "socket_connect_timeout": None, "health_check_interval": 10},
}


def open_redis(
    url: str,
    *,
    cluster: bool | None = None,
    credentials: CredentialProvider | None = None,
    **options: Any,
) -> redis.Redis:
    """A Redis client for ``url``; ``options`` go to the client (timeouts, health checks).

    Every Redis client of a plantstream process comes from here: a Redis Cluster client when
    ``cluster`` (None: ask the server), re-authenticating with ``credentials`` as they rotate.
    """
    return store_open_redis(url, cluster=cluster, credentials=credentials, **options)


def server_secret(settings: Settings) -> bytes:
    """The HMAC secret for API keys: configured, or generated once under the data dir."""
    if settings.server_secret is not None:
        return settings.server_secret.get_secret_value().encode()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return remembered_secret(settings.data_dir / "server-secret").encode()


def previous_server_secret(settings: Settings) -> bytes | None:
    """The secret before a rotation: keys hashed with it still verify (and are re-hashed)."""
    previous = settings.server_secret_previous
    return previous.get_secret_value().encode() if previous is not None else None
