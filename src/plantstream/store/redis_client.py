"""The one way plantstream opens Redis: a plain client or a Redis Cluster client, same calls.

Cluster mode is configured (``redis_cluster``) or detected (``INFO cluster``); AUTH credentials
can come from a provider that is asked again when the server refuses them (a rotated token).
"""

from __future__ import annotations

from typing import Any, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import RedisCluster
from redis.connection import AbstractConnection, ConnectionPool
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError


class RefreshableCredentials(Protocol):
    """A redis-py credential provider that can look again after a refused AUTH."""

    def get_credentials(self) -> tuple[str] | tuple[str, str]: ...

    def refresh(self, refused: tuple[str, ...]) -> bool: ...


class _ReauthConnection(AbstractConnection):
    """Authenticates again, once, with fresh credentials when the server refused the old ones."""

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        provider = self.credential_provider
        refresh = getattr(provider, "refresh", None)
        if self._sock or provider is None or refresh is None:
            return super().connect_check_health(check_health, retry_socket_connect)  # type: ignore[no-any-return]
        used = tuple(provider.get_credentials())
        try:
            return super().connect_check_health(check_health, retry_socket_connect)  # type: ignore[no-any-return]
        except AuthenticationError:
            if not refresh(used):
                raise
            # the secret rotated: the failed handshake closed the socket, start a new one
            return super().connect_check_health(check_health, retry_socket_connect)  # type: ignore[no-any-return]


_REAUTH_CLASSES: dict[type, type] = {}


def _reauth_class(base: type) -> type:
    if base not in _REAUTH_CLASSES:
        _REAUTH_CLASSES[base] = type(f"Reauth{base.__name__}", (_ReauthConnection, base), {})
    return _REAUTH_CLASSES[base]


class ReauthConnectionPool(ConnectionPool):
    """A pool whose connections (plain, TLS or any other class) re-authenticate on rotation."""

    def __init__(self, connection_class: type = redis.Connection, **kwargs: Any) -> None:
        super().__init__(connection_class=_reauth_class(connection_class), **kwargs)


class ClusterClient(RedisCluster):
    """``RedisCluster`` whose ``close`` also closes every node's connections.

    redis-py 8.1 builds a URL-made cluster's node clients on pools they do not own, so its
    ``close`` leaves their sockets open until garbage collection.
    """

    def close(self) -> None:
        manager = getattr(self, "nodes_manager", None)
        nodes = list(manager.nodes_cache.values()) if manager is not None else []
        super().close()
        for node in nodes:
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()


def _without_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its user and password (a provider gives them), and the user name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), (
        parts.username or None
    )


def is_cluster_server(url: str, **options: Any) -> bool:
    """Whether the server at ``url`` runs in cluster mode (``INFO cluster``)."""
    probe = redis.Redis(connection_pool=ReauthConnectionPool.from_url(url, **options))
    probe.auto_close_connection_pool = True
    with probe:
        return bool(probe.info("cluster").get("cluster_enabled") == 1)


def open_redis(
    url: str,
    *,
    cluster: bool | None = None,
    credentials: CredentialProvider | None = None,
    socket_timeout: float | None = 5.0,
    socket_connect_timeout: float | None = 2.0,
    health_check_interval: int = 0,
    **options: Any,
) -> redis.Redis:
    """A client for ``url``: a ``RedisCluster`` in cluster mode, else a ``redis.Redis``.

    ``cluster`` None detects the mode from the server. ``credentials`` (e.g.
    ``plantstream.aws.RedisAuth``) replaces any password in the URL; when it is
    ``RefreshableCredentials`` (has ``refresh``), a refused AUTH reads it again and the
    connection retries once. The
    cluster client is typed as ``redis.Redis``: it takes the same single-key commands, scripts
    and (non-transactional) pipelines; it follows MOVED and refreshes its topology itself.
    A cluster client ignores ``health_check_interval`` (redis-py drops it for node clients).
    """
    if credentials is not None:
        url, username = _without_credentials(url)
        if username and getattr(credentials, "username", "") is None:
            credentials.username = username  # type: ignore[attr-defined]
        options["credential_provider"] = credentials
    options.update(
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
        health_check_interval=health_check_interval,
    )
    if cluster is None:
        probe = {k: v for k, v in options.items() if k != "health_check_interval"}
        cluster = is_cluster_server(url, **probe)
    if cluster:
        return cast(
            redis.Redis,
            ClusterClient.from_url(url, connection_pool_class=ReauthConnectionPool, **options),
        )
    client = redis.Redis(connection_pool=ReauthConnectionPool.from_url(url, **options))
    client.auto_close_connection_pool = True  # as Redis.from_url: close() closes the pool
    return client


def is_cluster(client: redis.Redis) -> bool:
    return isinstance(client, RedisCluster)


def redis_ready(client: redis.Redis) -> str | None:
    """None when Redis takes commands; else why not, in a few words (for ``/readyz``).

    A cluster is ready only while every primary answers and says ``cluster_state:ok``: with
    a slot range whose primary and replicas are all gone, the cluster refuses those keys.
    """
    if not isinstance(client, RedisCluster):
        try:
            client.ping()
            if client.info("cluster").get("cluster_enabled") != 1:
                return None
            return _state_problem(client.execute_command("CLUSTER", "INFO"))  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            return f"redis unavailable: {type(exc).__name__}"
    cluster = cast(RedisCluster, client)
    for node in cluster.get_primaries():
        try:
            reply = cluster.get_redis_connection(node).execute_command("CLUSTER", "INFO")
        except redis.RedisError as exc:
            return f"redis node {node.name} unavailable: {type(exc).__name__}"
        if (problem := _state_problem(reply)) is not None:
            return problem
    return None


def _state_problem(reply: Any) -> str | None:
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
    if fields.get("cluster_state") != "ok":
        return f"redis cluster_state is {fields.get('cluster_state', 'unknown')}"
    return None
