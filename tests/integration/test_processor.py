"""The processor stores exactly what was accepted, once, with exact rollups and balanced books."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis
from fixtures.pipeline import (
    Produced,
    assert_books_balance,
    assert_rollups_match_raw,
    counters,
    drain,
    produce,
    simulated_readings,
    stored_readings,
)

from plantstream.errors import LeaseLostError
from plantstream.ingest.codecs import gateway_envelope
from plantstream.model import Reading, now_us
from plantstream.processor import Processor
from plantstream.processor.rows import Columns
from plantstream.store.hot import HotState
from plantstream.store.sensors import SensorKey
from plantstream.stream import RedisStream, pack_readings
from plantstream.stream.base import PutEntry

MakeProcessor = Callable[..., Processor]


def test_everything_produced_is_stored_once_with_exact_rollups(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
) -> None:
    produced = Produced({})
    produce(stream, simulated_readings(seconds=120), produced)
    processor = make_processor(database_url, stream, redis_client)
    drain(processor)

    assert stored_readings(db) == produced.readings
    assert_rollups_match_raw(db)
    assert_books_balance(db)
    books = counters(db)
    assert sum(v for (_, c), v in books.items() if c == "stored") == len(produced)
    # Redis holds each sensor's newest reading
    hot = HotState(redis_client)
    newest: dict[tuple[str, str, str], tuple[int, float]] = {}
    for (f, d, m, ts), v in produced.readings.items():
        if (f, d, m) not in newest or ts > newest[(f, d, m)][0]:
            newest[(f, d, m)] = (ts, v)
    for facility in ("plant-01", "plant-02"):
        latest = {(facility, x.device, x.metric): (x.ts_us, x.value) for x in hot.latest(facility)}
        assert latest == {k: v for k, v in newest.items() if k[0] == facility}


def test_a_batch_produced_twice_and_a_replay_change_nothing(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
) -> None:
    produced = Produced({})
    batches = list(simulated_readings(seconds=30))
    produce(stream, iter(batches), produced)
    produce(stream, iter(batches[:10]), produced)  # the producer retried some requests
    processor = make_processor(database_url, stream, redis_client)
    drain(processor)
    first = stored_readings(db)
    rollups = db.execute("SELECT * FROM rollup_1m ORDER BY 1, 2").fetchall()
    assert first == produced.readings
    duplicates = sum(len(r) for _, r in batches[:10])
    assert sum(v for (_, c), v in counters(db).items() if c == "duplicate") == duplicates

    # replay every shard from the start, as after restoring an old checkpoint
    processor.shutdown()
    db.execute("UPDATE shard_leases SET checkpoint = NULL")
    replay = make_processor(database_url, stream, redis_client)
    drain(replay)
    assert stored_readings(db) == first
    assert db.execute("SELECT * FROM rollup_1m ORDER BY 1, 2").fetchall() == rollups
    assert_rollups_match_raw(db)
    assert_books_balance(db)


def test_duplicates_inside_one_batch_keep_the_first(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
) -> None:
    ts = now_us() - 1_000_000
    first = Reading("m1", "temperature", ts, 20.0, 0)
    second = Reading("m1", "temperature", ts, 99.0, 0)
    stream.put(pack_readings("plant-01", now_us(), [first, second]))
    drain(make_processor(database_url, stream, redis_client))
    assert list(stored_readings(db).values()) == [20.0]
    assert db.execute("SELECT count, sum FROM rollup_1m").fetchall() == [(1, 20.0)]
    assert HotState(redis_client).latest("plant-01")[0].value == 20.0


def test_bad_records_become_dead_letters_and_the_books_still_balance(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
) -> None:
    received = now_us()
    good = Reading("m1", "pressure", received - 1_000_000, 5.0, 0)
    # these slipped past an old or hostile edge: the processor checks again
    bad = [
        Reading("m1", "pressure", received - 2_000_000, float("nan"), 0),
        Reading("m1", "pressure", received - 3_000_000, 5000.0, 0),
        Reading("m 1", "pressure", received - 4_000_000, 5.0, 0),
        Reading("m1", "warp_drive", received - 5_000_000, 5.0, 0),
        Reading("m1", "pressure", received - 30 * 86_400_000_000, 5.0, 0),
    ]
    stream.put(pack_readings("plant-01", received, [good, *bad]))
    stream.put([PutEntry("plant-01/m9", b"\x01not msgpack"), PutEntry("x/y", b"\x07future")])
    drain(make_processor(database_url, stream, redis_client))

    assert list(stored_readings(db).values()) == [5.0]
    letters = db.execute("SELECT reason_code, facility FROM dead_letters ORDER BY id").fetchall()
    assert sorted(code for code, _ in letters) == sorted(
        [
            "value_not_finite",
            "value_out_of_range",
            "invalid_id",
            "unknown_metric",
            "timestamp_too_old",
            "undecodable_record",
            "undecodable_record",
        ]
    )
    payloads = db.execute("SELECT payload FROM dead_letters WHERE facility IS NULL").fetchall()
    assert {bytes(p) for (p,) in payloads} == {b"\x01not msgpack", b"\x07future"}
    books = counters(db)
    assert books[("plant-01", "received")] == 6
    assert books[("plant-01", "rejected")] == 5
    assert books[("plant-01", "rejected:value_not_finite")] == 1
    assert_books_balance(db)


def test_late_data_is_stored_and_its_buckets_stay_exact(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
) -> None:
    now = now_us()
    minute = 60_000_000
    recent = [Reading("m1", "temperature", now - i * 1_000_000, 30.0 + i, 0) for i in range(30)]
    stream.put(pack_readings("plant-01", now, recent))
    processor = make_processor(database_url, stream, redis_client)
    drain(processor)
    three_hours_ago = now - 3 * 60 * minute
    late = [
        Reading("m1", "temperature", three_hours_ago + i * 1_000_000, 10.0, 0) for i in range(5)
    ]
    stream.put(pack_readings("plant-01", now, late))
    drain(processor)

    assert len(stored_readings(db)) == 35
    assert counters(db)[("plant-01", "late")] == 5
    assert_rollups_match_raw(db)
    # the latest value did not move back in time
    assert HotState(redis_client).latest("plant-01")[0].ts_us == now


def test_a_processor_that_lost_its_lease_cannot_commit(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
) -> None:
    produce(stream, simulated_readings(seconds=5), Produced({}))
    slow = make_processor(database_url, stream, redis_client, owner="slow")
    slow.rebalance()
    assert len(slow.leases.owned) == 4
    lease = next(iter(slow.leases.owned.values()))
    # the slow one stalls past its lease; another processor takes the shard
    db.execute("UPDATE shard_leases SET expires_at = now() - interval '1 second'")
    fast = make_processor(database_url, stream, redis_client, owner="fast")
    fast.rebalance()
    assert len(fast.leases.owned) == 4
    prepared = slow.prepare(lease.shard_id, lease.checkpoint)
    assert prepared.record_count > 0
    with pytest.raises(LeaseLostError):
        slow.commit(lease, prepared)
    assert stored_readings(db) == {}
    drain(fast)
    assert_rollups_match_raw(db)
    assert_books_balance(db)


def test_two_processors_share_shards_and_one_takes_over_a_dead_one(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
) -> None:
    produced = Produced({})
    produce(stream, simulated_readings(seconds=20), produced)
    a = make_processor(database_url, stream, redis_client, owner="a", batch_records=5)
    b = make_processor(database_url, stream, redis_client, owner="b", batch_records=5)
    for _ in range(3):  # a takes all at first; b then steals its fair share, one per round
        a.rebalance()
        b.rebalance()
    a.rebalance()
    assert len(a.leases.owned) == 2
    assert len(b.leases.owned) == 2
    a.step()
    b.step()
    # b dies without a word: its leases simply stop being renewed and run out
    db.execute("UPDATE shard_leases SET expires_at = now() WHERE owner = 'b'")
    a.rebalance()
    assert len(a.leases.owned) == 4
    drain(a)
    assert stored_readings(db) == produced.readings
    assert_rollups_match_raw(db)
    assert_books_balance(db)


def test_raw_json_bodies_from_api_gateway_are_validated_like_ingest(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
) -> None:
    ts = (datetime.now(UTC) - timedelta(seconds=3)).isoformat()
    body = {
        "facility": "plant-09",
        "readings": [
            {"device": "kiln-1", "metric": "temperature", "ts": ts, "value": 300.0},
            {"device": "kiln-1", "metric": "temperature", "ts": ts, "value": "hot"},
        ],
    }
    # what the gateway template writes for POST /ingest/plant-09 (its envelope of the path)
    stream.put(
        [
            PutEntry("plant-09", gateway_envelope("plant-09", json.dumps(body).encode())),
            PutEntry(
                "plant-09", gateway_envelope("plant-09", b'{"facility": "plant-09", "readings": [')
            ),
        ]
    )
    drain(make_processor(database_url, stream, redis_client))
    assert list(stored_readings(db).values()) == [300.0]
    codes = sorted(code for (code,) in db.execute("SELECT reason_code FROM dead_letters"))
    assert codes == ["invalid_json", "invalid_reading"]
    assert_books_balance(db)


def test_a_gateway_body_is_stored_only_for_the_facility_of_its_path(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
) -> None:
    """POST /ingest/plant-a may write plant-a only: a body naming plant-b is dead-lettered
    whole (forbidden_facility) and counted; an unwrapped body (the removed POST /ingest) too;
    a body with leading whitespace or a UTF-8 BOM inside the envelope is stored."""
    ts = (datetime.now(UTC) - timedelta(seconds=3)).isoformat()

    def batch(facility: str, value: float) -> bytes:
        reading = {"device": f"kiln-{value:.0f}", "metric": "temperature", "ts": ts, "value": value}
        return json.dumps({"facility": facility, "readings": [reading]}).encode()

    stream.put(
        [
            PutEntry("plant-a", gateway_envelope("plant-a", b"\r\n  " + batch("plant-a", 1.0))),
            PutEntry(
                "plant-a", gateway_envelope("plant-a", b"\xef\xbb\xbf" + batch("plant-a", 2.0))
            ),
            PutEntry("plant-a", gateway_envelope("plant-a", batch("plant-b", 3.0))),
            PutEntry("plant-b", batch("plant-b", 4.0)),
            PutEntry("plant-b", b" " + batch("plant-b", 5.0)),
        ]
    )
    drain(make_processor(database_url, stream, redis_client))
    stored = stored_readings(db)
    assert {f for f, *_ in stored} == {"plant-a"}
    assert sorted(stored.values()) == [1.0, 2.0]
    letters = db.execute(
        "SELECT facility, reason_code FROM dead_letters ORDER BY facility NULLS LAST"
    ).fetchall()
    assert letters == [
        ("plant-a", "forbidden_facility"),
        (None, "forbidden_facility"),
        (None, "forbidden_facility"),
    ]
    books = counters(db)
    assert books[("plant-a", "forbidden_records")] == 1
    assert books[("_unknown", "forbidden_records")] == 2
    assert ("plant-b", "stored") not in books
    assert_books_balance(db)


def test_the_processor_drains_kinesis_exactly_once(
    database_url: str,
    db: psycopg.Connection,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
    make_kinesis_stream: Callable[..., Any],
) -> None:
    """The same processor on the Kinesis backend (moto over HTTP), with a producer retry."""
    stream = make_kinesis_stream(shards=2)
    produced = Produced({})
    batches = list(simulated_readings(seconds=20, facilities=1, machines=3))
    produce(stream, iter(batches), produced)
    produce(stream, iter(batches[:3]), produced)  # a retried request
    drain(make_processor(database_url, stream, redis_client))
    assert stored_readings(db) == produced.readings
    assert_rollups_match_raw(db)
    assert_books_balance(db)
    checkpoints = db.execute("SELECT count(*) FROM shard_leases WHERE checkpoint <> ''").fetchone()
    assert checkpoints == (2,)


class FlakyHook:
    """A batch hook that fails its first ``failures`` calls, as detection does while its
    state store is away; records what it was given."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: list[tuple[SensorKey, int]] = []

    def __call__(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("detector state unavailable")
        self.seen += [
            (keys[s], t) for s, t in zip(rows.sensor_id.tolist(), rows.ts_us.tolist(), strict=True)
        ]


def test_a_failing_sink_is_retried_and_catches_up_on_every_batch_in_order(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    produced = Produced({})
    produce(stream, simulated_readings(seconds=20, facilities=1, machines=2), produced)
    hook = FlakyHook(failures=3)
    processor = make_processor(database_url, stream, redis_client, hooks=[hook], batch_records=5)
    with caplog.at_level(logging.INFO, logger="plantstream.processor"):
        drain(processor)
        # the data did not wait for the sink; the sink's retries follow their backoff
        assert stored_readings(db) == produced.readings
        deadline = time.monotonic() + 30
        while processor.sinks.behind():
            assert time.monotonic() < deadline, "the sink never caught up"
            processor.step()
    assert hook.failures == 0
    assert sorted(hook.seen) == sorted(((f, d, m), ts) for f, d, m, ts in produced.readings)
    assert len(hook.seen) == len(set(hook.seen)), "a batch was handed over twice"
    last: dict[SensorKey, int] = {}
    for sensor, ts in hook.seen:
        assert ts > last.get(sensor, -1), f"{sensor} went back in time"
        last[sensor] = ts
    failures = [r for r in caplog.records if "sink detection-0 failed" in r.getMessage()]
    assert len(failures) == 3
    assert any(r.getMessage() == "sink detection-0 caught up" for r in caplog.records)
