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
        return _run_pipeline(client, script, calls)
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


def _run_pipeline(
    client: redis.Redis,
    script: Script,
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
    tail: Sequence[Any] = (),
) -> list[Any]:
    """``calls`` as ``EVALSHA`` in one pipeline (one round trip), then ``tail`` (a command).

    redis-py's own script pipelining sends ``SCRIPT EXISTS`` first, a second round trip on
    every call (on the ingest hot path, per request: bench/results/redesign_ab.json). Here
    the script is loaded only when the server answers ``NOSCRIPT`` (after a restart or a
    ``SCRIPT FLUSH``), and the whole pipeline runs again: the calls that did run are
    idempotent or de-duplicated downstream, as after any retry.
    """
    for attempt in range(2):
        with client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            if tail:
                pipe.execute_command(*tail)  # type: ignore[no-untyped-call]
            replies = list(pipe.execute(raise_on_error=False))
        missing = any(isinstance(r, redis.exceptions.NoScriptError) for r in replies)
        if missing and attempt == 0:
            script.sha = client.script_load(script.script)
            continue
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
    raise AssertionError("unreachable")  # pragma: no cover


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
    wait = ("WAIT", 1, wait_replica_ms) if wait_replica_ms and has_replica else ()
    replies = _run_pipeline(connection, script, calls, wait)
    if wait_replica_ms and has_replica and int(replies[-1]) < 1:
        raise redis.exceptions.TimeoutError(f"no replica of {node.name} confirmed the writes")
    return list(replies)
