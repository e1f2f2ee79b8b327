"""Running one Lua script over many keys on a plain Redis or a Redis Cluster, batched per node.

A cluster pipeline refuses scripts; this groups the calls by the node owning their keys and
runs each group as one plain pipeline on that node, optionally confirmed by a replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

_RETRY_ON = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
)


def run_scripts(
    client: redis.Redis,
    script: Script,
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
    *,
    wait_replica_ms: int = 0,
    attempts: int = 5,
) -> list[Any]:
    """Run ``script`` once per ``(keys, args)``, one round trip per node; results in order.

    A cluster pipeline refuses scripts, so calls are grouped by the node owning their first
    key and each group runs as a plain pipeline on that node. After a redirection or a lost
    node the topology is refreshed and the unfinished groups run again (so a script may run
    twice: callers' scripts are idempotent or de-duplicated downstream). With
    ``wait_replica_ms``, a group that lands on a primary with a replica ends with ``WAIT 1``:
    its writes are on the replica too before this returns, so a failover cannot lose them.
    """
    results: list[Any] = [None] * len(calls)
    if not isinstance(client, RedisCluster):
        with client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                script(keys=list(keys), args=list(args), client=pipe)
            return list(pipe.execute())
    cluster = cast(RedisCluster, client)
    pending = list(range(len(calls)))
    for attempt in range(attempts):
        groups: dict[str, list[int]] = {}
        for index in pending:
            node = cluster.get_node_from_key(calls[index][0][0])
            groups.setdefault(node.name, []).append(index)
        failed: list[int] = []
        error: Exception | None = None
        for name, indexes in groups.items():
            node = cluster.get_node(node_name=name)
            try:
                replies = _run_group(
                    cluster, node, script, [calls[i] for i in indexes], wait_replica_ms
                )
            except _RETRY_ON as exc:
                failed += indexes
                error = exc
                continue
            for index, reply in zip(indexes, replies, strict=False):
                results[index] = reply
        if not failed:
            return results
        if attempt == attempts - 1 and error is not None:
            raise error
        cluster.nodes_manager.initialize()
        pending = failed
    return results


def _run_group(
    cluster: RedisCluster,
    node: Any,
    script: Script,
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
    wait_replica_ms: int,
) -> list[Any]:
    connection = cluster.get_redis_connection(node)
    slot = cluster.keyslot(calls[0][0][0])  # type: ignore[no-untyped-call]
    has_replica = len(cluster.nodes_manager.slots_cache.get(slot, ())) > 1
    with connection.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            script(keys=list(keys), args=list(args), client=pipe)
        if wait_replica_ms and has_replica:
            pipe.execute_command("WAIT", 1, wait_replica_ms)  # type: ignore[no-untyped-call]
        replies = pipe.execute()
    if wait_replica_ms and has_replica and int(replies[-1]) < 1:
        raise redis.exceptions.TimeoutError(f"no replica of {node.name} confirmed the writes")
    return list(replies)
