"""plantstream on a real local Redis Cluster (3 primaries + 3 replicas): the client, the
stream spread over the nodes, hot state, the processor end to end, and a failover drill."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import psycopg
import pytest
import redis
from fixtures.pipeline import (
    Produced,
    assert_books_balance,
    counters,
    drain,
    produce,
    simulated_readings,
    stored_readings,
)
from fixtures.redis_cluster import (  # noqa: F401 - fixtures used by name
    cluster_client,
    make_redis_cluster,
    redis_cluster,
    redis_cluster_server,
)
from redis.cluster import RedisCluster

from plantstream.detect import DetectionEngine
from plantstream.detect.engine import state_key
from plantstream.errors import StreamError
from plantstream.local.redis_cluster import LocalRedisCluster
from plantstream.model import now_us
from plantstream.processor import Processor
from plantstream.store.hot import HotState
from plantstream.store.redis_client import open_redis, redis_ready
from plantstream.stream import PutEntry, RedisStream, pack_readings

pytestmark = pytest.mark.integration


def read_all(stream: RedisStream, shard_id: str) -> list[bytes]:
    records: list[bytes] = []
    after = None
    while True:
        result = stream.read(shard_id, after, 100)
        records += [r.data for r in result.records]
        if not result.records:
            return records
        after = result.records[-1].sequence


def test_open_redis_detects_a_cluster_and_a_plain_server(
    cluster_client: redis.Redis,  # noqa: F811
    redis_cluster: LocalRedisCluster,  # noqa: F811
    redis_url: str,
) -> None:
    assert isinstance(cluster_client, RedisCluster)
    plain = open_redis(redis_url)
    assert not isinstance(plain, RedisCluster)
    plain.close()
    # what the issue saw: a plain client on one node answers MOVED for most keys
    naive = open_redis(redis_cluster.url(), cluster=False)
    keys = [f"key-{n}" for n in range(20)]
    refused = 0
    for key in keys:
        try:
            naive.set(key, "x")
        except redis.exceptions.MovedError:
            refused += 1
    assert refused > 0
    naive.close()
    for key in keys:  # the cluster client routes every key to its node
        cluster_client.set(key, "x")
    assert [cluster_client.get(key) for key in keys] == [b"x"] * 20
    assert redis_ready(cluster_client) is None


def test_the_stream_spreads_its_shards_over_the_primaries(
    cluster_client: redis.Redis,  # noqa: F811
) -> None:
    stream = RedisStream(cluster_client, "readings", retention_hours=0)
    assert stream.create(8)
    assert not stream.create(8)  # exists: left as it is
    cluster = cluster_client
    assert isinstance(cluster, RedisCluster)
    shards = stream.list_shards()
    owners = {cluster.get_node_from_key(stream.shard_key(s.shard_id)).name for s in shards}
    assert len(owners) == 3, "each primary holds some of the shards"
    entries = [PutEntry(f"plant-01/dev-{n}", f"record-{n}".encode()) for n in range(200)]
    ids = stream.put(entries)
    assert len(ids) == 200
    stored = [data for s in shards for data in read_all(stream, s.shard_id)]
    assert sorted(stored) == sorted(e.data for e in entries)
    # every record sits on the node owning its shard's slot, not on one node
    per_node = {}
    for s in shards:
        node = cluster.get_node_from_key(stream.shard_key(s.shard_id)).name
        per_node[node] = per_node.get(node, 0) + int(cluster.xlen(stream.shard_key(s.shard_id)))
    assert sum(per_node.values()) == 200
    assert all(count > 0 for count in per_node.values())


def test_resharding_on_a_cluster_keeps_lineage_and_order(
    cluster_client: redis.Redis,  # noqa: F811
) -> None:
    stream = RedisStream(cluster_client, "readings", retention_hours=0)
    stream.create(2)
    key = "plant-01/press-1"
    stream.put([PutEntry(key, b"before-1"), PutEntry(key, b"before-2")])
    parent = next(s for s in stream.list_shards() if s.covers(int(_md5(key))))
    left, right = stream.split(parent.shard_id)
    stream.put([PutEntry(key, b"after-1")])
    by_id = {s.shard_id: s for s in stream.list_shards()}
    assert by_id[parent.shard_id].closed
    assert by_id[left].parent_ids == by_id[right].parent_ids == (parent.shard_id,)
    assert read_all(stream, parent.shard_id) == [b"before-1", b"before-2"]
    child = left if by_id[left].covers(int(_md5(key))) else right
    assert read_all(stream, child) == [b"after-1"]
    end = stream.read(parent.shard_id, None, 100)
    assert end.end_of_shard
    merged = stream.merge(left, right)
    stream.put([PutEntry(key, b"after-merge")])
    assert read_all(stream, merged) == [b"after-merge"]


def _md5(key: str) -> int:
    from plantstream.stream import hash_key

    return hash_key(key)


def test_old_layout_shards_are_read_on_and_their_children_spread(
    redis_client: redis.Redis,
) -> None:
    """A data dir from before the per-shard layout: unprocessed entries are not lost."""
    meta = "ps:stream:{readings}:meta"
    full = str(2**128 - 1)
    redis_client.hset(
        meta,
        "shardId-000000000000",
        json.dumps(
            {
                "id": "shardId-000000000000",
                "parents": [],
                "start": "0",
                "end": full,
                "closed": False,
            }
        ),
    )
    redis_client.xadd("ps:stream:{readings}:shard:shardId-000000000000", {"d": b"old-entry"})
    stream = RedisStream(redis_client, "readings", retention_hours=0)
    stream.ensure(4)  # exists: nothing is re-created
    assert [s.shard_id for s in stream.list_shards()] == ["shardId-000000000000"]
    stream.put([PutEntry("plant-01/a", b"new-entry")])
    assert read_all(stream, "shardId-000000000000") == [b"old-entry", b"new-entry"]
    left, right = stream.split("shardId-000000000000")
    stream.put([PutEntry(f"plant-01/{n}", b"child-entry") for n in range(10)])
    assert stream.shard_key(left) == "ps:stream:{readings/shardId-000000000001}:records"
    assert read_all(stream, "shardId-000000000000") == [b"old-entry", b"new-entry"]
    assert stream.read("shardId-000000000000", None, 10).end_of_shard
    assert len(read_all(stream, left) + read_all(stream, right)) == 10


def test_hot_state_on_a_cluster(cluster_client: redis.Redis) -> None:  # noqa: F811
    hot = HotState(cluster_client)
    rows = [(f"plant-{f:02d}", "press-1", "temperature", 1_000 + f, 20.0 + f, 0) for f in range(12)]
    assert hot.update_latest(rows) == 12
    assert hot.update_latest(rows) == 0  # a replay changes nothing
    older = [("plant-03", "press-1", "temperature", 5, -1.0, 0)]
    assert hot.update_latest(older) == 0
    (latest,) = hot.latest("plant-03")
    assert (latest.ts_us, latest.value) == (1_003, 23.0)
    assert isinstance(cluster_client, RedisCluster)
    nodes = {cluster_client.get_node_from_key(f"ps:latest:plant-{f:02d}").name for f in range(12)}
    assert len(nodes) > 1  # the facilities' hashes are spread, the scripts still ran


def test_processor_end_to_end_on_a_cluster(
    cluster_client: redis.Redis,  # noqa: F811
    database_url: str,
    db: psycopg.Connection,
    make_processor: Callable[..., Processor],
) -> None:
    stream = RedisStream(cluster_client, "readings", retention_hours=0)
    stream.create(4)
    produced = Produced({})
    produce(stream, simulated_readings(seconds=20), produced)
    engine = DetectionEngine(database_url=database_url, redis_client=cluster_client)
    try:
        drain(make_processor(database_url, stream, cluster_client, hooks=[engine]))
    finally:
        engine.close()
    assert stored_readings(db) == produced.readings
    assert_books_balance(db)
    # detection kept its per-sensor state on the cluster (its hook errors are only logged)
    for facility in {f for f, _, _, _ in produced.readings}:
        assert cluster_client.hlen(state_key(facility)) > 0
    newest: dict[tuple[str, str, str], int] = {}
    for facility, device, metric, ts in produced.readings:
        newest[(facility, device, metric)] = max(newest.get((facility, device, metric), 0), ts)
    hot = HotState(cluster_client)
    for facility in {f for f, _, _ in newest}:
        for value in hot.latest(facility):
            assert value.ts_us == newest[(facility, value.device, value.metric)]


def _primary_of(cluster: LocalRedisCluster, client: RedisCluster, key: str) -> int:
    name = client.get_node_from_key(key).name
    return next(i for i, n in enumerate(cluster.nodes) if name.endswith(f":{n.port}"))


def _replica_of(cluster: LocalRedisCluster, primary: int) -> int:
    with cluster.client(primary) as client:
        my_id = client.execute_command("CLUSTER", "MYID").decode()
    for index in range(len(cluster.nodes)):
        with cluster.client(index) as client:
            info = client.info("replication")
            if info["role"] == "slave" and _master_id(client) == my_id:
                return index
    raise AssertionError("no replica")


def _master_id(client: redis.Redis) -> str:
    for line in client.execute_command("CLUSTER", "NODES").decode().splitlines():
        fields = line.split()
        if "myself" in fields[2]:
            return fields[3]
    return "-"


def _put_until_accepted(stream: RedisStream, entries: list[PutEntry], deadline: float) -> int:
    """What a gateway does: keep the batch and retry it until the stream takes it; returns
    how many times it was refused."""
    refused = 0
    while True:
        try:
            stream.put(entries)
            return refused
        except StreamError:
            refused += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_failover_drill_loses_nothing_and_recovers_by_itself(
    make_redis_cluster: Callable[..., LocalRedisCluster],  # noqa: F811
    database_url: str,
    db: psycopg.Connection,
    make_processor: Callable[..., Processor],
) -> None:
    """SIGKILL a primary while readings flow: its replica takes over, every reading the
    stream accepted is stored exactly once, and neither the producer nor the processor
    is restarted or reconfigured."""
    cluster = make_redis_cluster(node_timeout_ms=1000)
    client = open_redis(cluster.url())
    assert isinstance(client, RedisCluster)
    stream = RedisStream(client, "readings", retention_hours=0)
    stream.create(4)
    processor = make_processor(database_url, stream, open_redis(cluster.url()))
    stop = threading.Event()
    runner = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    runner.start()
    produced = Produced({})
    batches = list(simulated_readings(seconds=40, facilities=3))
    victim = _primary_of(cluster, client, stream.shard_key("shardId-000000000000"))
    replica = _replica_of(cluster, victim)
    deadline = time.monotonic() + 60
    refused = accepted = 0
    try:
        received = now_us()
        for n, (facility, readings) in enumerate(batches):
            if n == len(batches) // 3:
                cluster.kill(victim)  # no shutdown: the replica must take over on its own
            entries = pack_readings(facility, received, readings)
            refused += _put_until_accepted(stream, entries, deadline)
            accepted += len(entries)
            for r in readings:
                produced.readings.setdefault((facility, r.device, r.metric, r.ts_us), r.value)
        assert cluster.role(replica) == "master"
        assert refused > 0, "the drill never saw the outage"
        while stored_readings(db) != produced.readings:
            assert time.monotonic() < deadline, "the processor did not catch up"
            time.sleep(0.1)
    finally:
        stop.set()
        runner.join(timeout=30)
    assert_books_balance(db)
    books = counters(db)
    assert sum(v for (_, name), v in books.items() if name == "stored") == len(produced)
    assert redis_ready(client) is None
    # both nodes of one slot range gone: the cluster is down and readiness says so
    cluster.kill(replica)
    deadline = time.monotonic() + 30
    while (problem := redis_ready(client)) is None:
        assert time.monotonic() < deadline, "readiness never noticed the broken cluster"
        time.sleep(0.1)
    assert "cluster_state" in problem or "unavailable" in problem
    # both come back from their append-only files: the same client is ready again, and the
    # stream still holds every record it accepted (a refused batch retried may add copies)
    cluster.start()
    while redis_ready(client) is not None:
        assert time.monotonic() < deadline, "the restarted cluster never became ready"
        time.sleep(0.1)
    held = sum(len(read_all(stream, s.shard_id)) for s in stream.list_shards())
    assert held >= accepted
    client.close()
