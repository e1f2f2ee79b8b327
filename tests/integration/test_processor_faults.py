"""Faults the processor must survive with nothing lost and nothing stored twice.

SIGKILL at random moments, a dead processor's shards taken over, shard splits and merges,
a PostgreSQL restart and Redis down for a while. Each test ends by comparing the stored set
with the accepted set exactly, and the rollups with the raw rows.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import psycopg
import pytest
import redis
from fixtures.faults import (
    ProcessorProcess,
    checkpoints,
    following_redis,
    hot_latest,
    lease_owners,
    newest_per_sensor,
    processor_env,
    stored_count,
    wait_until,
)
from fixtures.kinesis import MOTO_REGION, dummy_session
from fixtures.pipeline import (
    Produced,
    assert_books_balance,
    assert_rollups_match_raw,
    counters,
    produce,
    simulated_readings,
    stored_readings,
)

from plantstream.aws import CredentialSource
from plantstream.local import EmbeddedPostgres, EmbeddedRedis
from plantstream.model import Reading
from plantstream.processor import DetectionSink, Processor, ProcessorConfig, RedisLatestSink
from plantstream.processor.rows import Columns
from plantstream.store.hot import HotState
from plantstream.store.partitions import ensure_window
from plantstream.store.schema import migrate
from plantstream.store.sensors import SensorKey
from plantstream.stream import RedisStream
from plantstream.stream.records import decode_record

SpawnProcessor = Callable[..., ProcessorProcess]
Batches = list[tuple[str, list[Reading]]]


@pytest.fixture
def spawn_processor(
    database_url: str, redis_url: str, stream: RedisStream, tmp_path: Path
) -> Iterator[SpawnProcessor]:
    """Factory: a processor subprocess on the test's database, Redis and stream.

    Short leases, so a restarted processor takes a killed one's shards over within seconds.
    Every process is SIGKILLed at teardown if it is still running.
    """
    started: list[ProcessorProcess] = []

    def spawn(**settings: object) -> ProcessorProcess:
        settings = {"lease_seconds": 2, "stream_shards": 4, **settings}
        env = processor_env(
            database_url=database_url,
            redis_url=redis_url,
            stream_name=stream.name,
            data_dir=tmp_path / "data",
            **settings,
        )
        process = ProcessorProcess(env, tmp_path / f"processor-{len(started)}.log", tmp_path)
        started.append(process)
        return process

    yield spawn
    for process in started:
        process.kill()


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test's own, free to be stopped and started again."""
    server = EmbeddedPostgres(tmp_path / "postgres")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server of this test's own, free to be stopped and started again."""
    server = EmbeddedRedis(tmp_path / "redis", fsync="everysec")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def run_in_thread(processor: Processor) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,), name="processor", daemon=True)
    thread.start()
    return thread, stop


def stop_thread(thread: threading.Thread, stop: threading.Event) -> None:
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the processor did not stop"


def assert_stored_exactly(conn: psycopg.Connection, produced: Produced) -> None:
    """The accepted set, once each: no reading missing, none extra, none applied twice."""
    assert stored_readings(conn) == produced.readings
    assert_rollups_match_raw(conn)
    assert_books_balance(conn)
    books = counters(conn)
    assert sum(v for (_, c), v in books.items() if c == "stored") == len(produced)
    # a committed batch applied again would show up here (ON CONFLICT hides it from the rows)
    assert sum(v for (_, c), v in books.items() if c == "duplicate") == 0
    assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


# -- SIGKILL ----------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_repeats_nothing(
    db: psycopg.Connection, stream: RedisStream, spawn_processor: SpawnProcessor
) -> None:
    produced = Produced({})
    produce(stream, simulated_readings(seconds=800, facilities=4, machines=8), produced)
    total = len(produced)
    assert total >= 100_000

    rng = random.Random(20240611)
    # where to kill: after a random number of stored readings, or (twice) as soon as the new
    # process holds a lease, i.e. in its very first batch
    plan: list[int | None] = sorted(rng.sample(range(total // 50, total * 9 // 10), 10))
    for _ in range(2):
        plan.insert(rng.randrange(len(plan) + 1), None)
    for target in plan:
        processor = spawn_processor(processor_batch_records=50)
        before = stored_count(db)
        if target is None:
            wait_until(
                lambda p=processor: not p.alive() or p.owner in lease_owners(db).values(),
                timeout=60,
                what="the new processor to take a lease",
            )
        else:
            goal = max(target, before + 1)  # at least one commit in this life
            wait_until(
                lambda p=processor, t=goal: not p.alive() or stored_count(db) >= t,
                timeout=60,
                what=f"{goal} readings stored",
            )
        assert processor.alive(), processor.log_tail()
        processor.kill()
    assert stored_count(db) < total, "the kills came too late to interrupt anything"

    survivor = spawn_processor(processor_batch_records=50)
    wait_until(
        lambda: not survivor.alive() or stored_count(db) >= total,
        timeout=120,
        what="every reading stored after the last restart",
    )
    assert survivor.stop() == 0, survivor.log_tail()
    assert_stored_exactly(db, produced)


@pytest.mark.slow
def test_a_killed_processors_shards_are_taken_over_by_the_other(
    db: psycopg.Connection, stream: RedisStream, spawn_processor: SpawnProcessor
) -> None:
    batches = list(simulated_readings(seconds=600, facilities=2, machines=4))
    produced = Produced({})
    produce(stream, iter(batches[:50]), produced)
    a = spawn_processor(processor_batch_records=5)
    b = spawn_processor(processor_batch_records=5)
    wait_until(
        lambda: set(lease_owners(db).values()) == {a.owner, b.owner},
        timeout=60,
        what="both processors to hold leases",
    )
    held_by_b = {s for s, owner in lease_owners(db).items() if owner == b.owner}
    before = checkpoints(db)
    produce(stream, iter(batches[50:]), produced)  # a backlog for both
    wait_until(
        lambda: any(checkpoints(db)[s] != before[s] for s in held_by_b),
        timeout=60,
        what="the second processor to commit on its shards",
    )
    assert b.alive(), b.log_tail()
    b.kill()
    assert stored_count(db) < len(produced), "b was killed after the work was done"

    wait_until(
        lambda: not a.alive() or set(lease_owners(db).values()) == {a.owner},
        timeout=60,
        what="the survivor to own every shard",
    )
    wait_until(
        lambda: not a.alive() or stored_count(db) >= len(produced),
        timeout=60,
        what="every reading stored",
    )
    assert a.stop() == 0, a.log_tail()
    assert_stored_exactly(db, produced)


# -- resharding -------------------------------------------------------------------------


class AppliedOrder:
    """A batch hook recording, batch by batch, which readings were applied (a sink through
    ``DetectionSink``)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[SensorKey, int]]] = []

    def __call__(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None:
        self.batches.append(
            [
                (keys[s], t)
                for s, t in zip(rows.sensor_id.tolist(), rows.ts_us.tolist(), strict=True)
            ]
        )


def shard_of_each_reading(stream: RedisStream) -> dict[tuple[SensorKey, int], str]:
    """(sensor, ts) -> the shard its record was written to, read back from the stream."""
    where = {}
    for shard in stream.list_shards():
        for record in stream.read(shard.shard_id, None, 1_000_000).records:
            columns = decode_record(record.data)
            for i in range(len(columns)):
                r = columns.reading(i)
                where[((columns.facility, r.device, r.metric), r.ts_us)] = shard.shard_id
    return where


@pytest.mark.slow
def test_split_and_merge_while_running_keep_device_order_and_lineage(
    database_url: str, db: psycopg.Connection, stream: RedisStream, redis_client: redis.Redis
) -> None:
    batches = list(simulated_readings(seconds=600, facilities=2, machines=8))
    produced = Produced({})
    put = [0]
    failed: list[BaseException] = []

    def producer() -> None:
        try:
            for batch in batches:
                produce(stream, iter([batch]), produced)
                put[0] += 1
        except BaseException as exc:  # surfaced by the main thread
            failed.append(exc)

    order = AppliedOrder()
    processor = Processor(
        database_url=database_url,
        stream=RedisStream(redis_client, stream.name, retention_hours=0),
        config=ProcessorConfig(stream_name=stream.name, batch_records=10, lease_seconds=5),
        sinks=[RedisLatestSink(redis_client), DetectionSink(order, name="order")],
    )
    thread, stop = run_in_thread(processor)
    producing = threading.Thread(target=producer, name="producer", daemon=True)
    producing.start()
    try:
        n = len(batches)
        wait_until(lambda: put[0] >= n // 4, timeout=60, what="a quarter produced")
        left, right = stream.split("shardId-000000000000")
        wait_until(lambda: put[0] >= n // 2, timeout=60, what="half produced")
        merged_a = stream.merge("shardId-000000000002", "shardId-000000000003")
        wait_until(lambda: put[0] >= 3 * n // 4, timeout=60, what="three quarters produced")
        merged_b = stream.merge(left, right)
        producing.join(timeout=60)
        assert not failed, failed
        wait_until(
            lambda: not failed and stored_count(db) >= len(produced),
            timeout=90,
            what="every reading stored",
        )
        assert thread.is_alive()
    finally:
        producing.join(timeout=60)
        stop_thread(thread, stop)

    assert_stored_exactly(db, produced)

    shards = {s.shard_id: s for s in stream.list_shards()}
    assert shards[merged_a].parent_ids == ("shardId-000000000002", "shardId-000000000003")
    assert shards[merged_b].parent_ids == (left, right)
    where = shard_of_each_reading(stream)
    # every child received data, so each reshard happened while producing
    assert {left, right, merged_a, merged_b} <= set(where.values())

    # order per device: each sensor's readings were applied in time order, across batches
    # and across the parent -> child hand-over
    last_ts: dict[SensorKey, int] = {}
    first_seen: dict[str, int] = {}
    last_seen: dict[str, int] = {}
    for index, batch in enumerate(order.batches):
        for sensor, ts in batch:
            assert ts > last_ts.get(sensor, -1), f"{sensor} went back in time"
            last_ts[sensor] = ts
            shard = where[(sensor, ts)]
            first_seen.setdefault(shard, index)
            last_seen[shard] = index
    # parents finished before their children started
    finished = dict(db.execute("SELECT shard_id, finished FROM shard_leases").fetchall())
    for shard in shards.values():
        assert finished[shard.shard_id] == shard.closed, shard.shard_id
        for parent in shard.parent_ids:
            assert first_seen[shard.shard_id] > last_seen.get(parent, -1), (parent, shard.shard_id)


# -- PostgreSQL and Redis outages -----------------------------------------------------------


def _stored_or_none(url: str) -> int | None:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
            return stored_count(conn)
    except psycopg.OperationalError:
        return None


@pytest.mark.slow
def test_processor_reconnects_after_postgresql_restarts(
    private_postgres: EmbeddedPostgres, stream: RedisStream, redis_client: redis.Redis
) -> None:
    migrate(private_postgres.url())
    batches = list(simulated_readings(seconds=300, facilities=2, machines=4))
    produced = Produced({})
    produce(stream, iter(batches[:200]), produced)
    processor = Processor(
        # the embedded server may come back on another port (its old one lingers in
        # TIME_WAIT); look the address up on every connect, as a DNS endpoint would be
        database_url=private_postgres.url,
        stream=stream,
        config=ProcessorConfig(stream_name=stream.name, batch_records=5),
        sinks=[RedisLatestSink(redis_client)],
    )
    thread, stop = run_in_thread(processor)
    try:
        wait_until(
            lambda: (_stored_or_none(private_postgres.url()) or 0) > 0,
            timeout=30,
            what="the first commits",
        )
        private_postgres.stop()  # mid-run: the backlog is far from drained
        produce(stream, iter(batches[200:]), produced)  # ingest goes on meanwhile
        assert thread.is_alive()
        private_postgres.start()
        wait_until(
            lambda: (_stored_or_none(private_postgres.url()) or 0) >= len(produced),
            timeout=90,
            what="every reading stored after the restart",
        )
        assert thread.is_alive()
    finally:
        stop_thread(thread, stop)
    with psycopg.connect(private_postgres.url(), autocommit=True) as conn:
        assert stored_count(conn) > 0
        assert_stored_exactly(conn, produced)


@pytest.mark.slow
def test_data_keeps_flowing_while_redis_is_down_and_latest_catches_up(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    private_redis: EmbeddedRedis,
) -> None:
    batches = list(simulated_readings(seconds=120, facilities=2, machines=4))
    facilities = {facility for facility, _ in batches}
    hot_client = following_redis(private_redis, socket_timeout=2, socket_connect_timeout=1)
    check_client = following_redis(private_redis)
    hot = HotState(check_client)
    processor = Processor(
        database_url=database_url,
        stream=stream,
        config=ProcessorConfig(stream_name=stream.name, batch_records=20),
        sinks=[RedisLatestSink(hot_client)],
    )
    produced = Produced({})
    thread, stop = run_in_thread(processor)
    try:
        produce(stream, iter(batches[:120]), produced)
        first = newest_per_sensor(produced.readings)
        wait_until(
            lambda: hot_latest(hot, facilities) == first, timeout=30, what="latest values in Redis"
        )

        private_redis.stop()
        produce(stream, iter(batches[120:]), produced)
        # PostgreSQL keeps taking everything while the hot state is unreachable
        wait_until(
            lambda: stored_count(db) >= len(produced), timeout=30, what="storage without Redis"
        )
        assert not private_redis.is_running()

        private_redis.start()
        everything = newest_per_sensor(produced.readings)
        assert everything != first
        wait_until(
            lambda: hot_latest(hot, facilities) == everything,
            timeout=30,
            what="Redis to catch up from PostgreSQL",
        )
        assert thread.is_alive()
    finally:
        stop_thread(thread, stop)
        hot_client.close()
        check_client.close()
    assert_stored_exactly(db, produced)


def test_the_processor_follows_a_rotated_database_password(
    moto_endpoint: str,
    postgres_admin_url: str,
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
) -> None:
    """Credentials from Secrets Manager rotate while the processor runs: its sessions are
    ended, and the new ones log in with the new password; nothing is lost or repeated."""
    secrets = dummy_session().client(
        "secretsmanager", region_name=MOTO_REGION, endpoint_url=moto_endpoint
    )
    role = f"rotating_{uuid.uuid4().hex[:8]}"
    name = psycopg.sql.Identifier(role)
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD 'one'").format(name))
    arn = secrets.create_secret(
        Name=f"plantstream/{role}", SecretString=json.dumps({"username": role, "password": "one"})
    )["ARN"]
    base = database_url.split("@", 1)[1]
    source = CredentialSource(
        f"postgresql://placeholder@{base}", secret_arn=arn, client=secrets, ttl=0
    )
    batches = list(simulated_readings(seconds=60, facilities=1, machines=2))
    produced = Produced({})
    produce(stream, iter(batches[:30]), produced)
    ensure_window(db, past_days=1)  # so the role owns no partition: it can be dropped after
    processor = Processor(
        database_url=source,
        stream=stream,
        config=ProcessorConfig(stream_name=stream.name, batch_records=10),
        sinks=[RedisLatestSink(redis_client)],
    )
    thread, stop = run_in_thread(processor)
    try:
        wait_until(lambda: stored_count(db) >= len(produced), timeout=30, what="the first readings")
        # rotation: secret and role change together; the sessions of the old password end
        secrets.put_secret_value(
            SecretId=arn, SecretString=json.dumps({"username": role, "password": "two"})
        )
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("ALTER ROLE {} PASSWORD 'two'").format(name))
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
        produce(stream, iter(batches[30:]), produced)
        wait_until(
            lambda: stored_count(db) >= len(produced),
            timeout=60,
            what="every reading stored after the rotation",
        )
        assert thread.is_alive()
        sessions = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)
        ).fetchone()
        assert sessions is not None
        assert sessions[0] >= 1  # the processor's new sessions, logged in after the rotation
    finally:
        stop_thread(thread, stop)
        # its sessions own temp tables until they are gone
        wait_until(
            lambda: (
                db.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)
                ).fetchone()
                == (0,)
            ),
            timeout=30,
            what="the rotated role's sessions to end",
        )
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(name))
    assert_stored_exactly(db, produced)
