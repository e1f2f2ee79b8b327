"""The Kinesis backend against a moto server over real HTTP, with fakes only at the client seam.

Fault injection wraps the real moto client: it withholds some records or raises AWS errors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import psycopg
import pytest
import redis
from botocore.exceptions import ClientError
from fixtures.faults import wait_until
from fixtures.kinesis import MOTO_REGION, dummy_session
from fixtures.pipeline import (
    Produced,
    assert_books_balance,
    assert_rollups_match_raw,
    produce,
    simulated_readings,
    stored_readings,
)

from plantstream.errors import InvalidInputError, StreamThrottledError, StreamUnavailableError
from plantstream.local.ports import free_port
from plantstream.processor import Processor
from plantstream.stream.base import HASH_SPACE_END, PutEntry, ShardInfo, StreamRecord
from plantstream.stream.hashing import partition_key, shard_for
from plantstream.stream.kinesis import (
    MAX_RECORD_BYTES,
    KinesisStream,
    create_stream,
    kinesis_client,
    merge_shards,
    split_shard,
    update_shard_count,
)

pytestmark = [pytest.mark.integration]

THROTTLED = "ProvisionedThroughputExceededException"
MakeStream = Callable[..., KinesisStream]


class Wrapper:
    """Delegates every call to the real moto client unless a subclass intercepts it."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class FailingPuts(Wrapper):
    """Rejects the records ``fails(position)`` picks in the next ``rounds`` PutRecords calls.

    Rejected records are not forwarded, exactly like a partial failure of Kinesis.
    """

    def __init__(
        self, real: Any, fails: Callable[[int], bool], *, rounds: int | None, code: str
    ) -> None:
        super().__init__(real)
        self.fails, self.rounds, self.code = fails, rounds, code
        self.calls = 0

    def put_records(self, **request: Any) -> dict[str, Any]:
        self.calls += 1
        if self.rounds is not None and self.calls > self.rounds:
            return dict(self.real.put_records(**request))
        records = request["Records"]
        kept = [r for i, r in enumerate(records) if not self.fails(i)]
        forwarded = iter(
            self.real.put_records(StreamName=request["StreamName"], Records=kept)["Records"]
            if kept
            else []
        )
        results = [
            {"ErrorCode": self.code, "ErrorMessage": "injected"}
            if self.fails(i)
            else next(forwarded)
            for i in range(len(records))
        ]
        return {"FailedRecordCount": len(records) - len(kept), "Records": results}


class RaisingCalls(Wrapper):
    """Raises ``code`` from the next ``times`` calls of ``operation``; counts every call."""

    def __init__(self, real: Any, operation: str = "", code: str = "", times: int = 0) -> None:
        super().__init__(real)
        self.operation, self.code, self.times = operation, code, times
        self.counts: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.real, name)

        def call(**request: Any) -> Any:
            self.counts[name] = self.counts.get(name, 0) + 1
            if name == self.operation and self.times:
                self.times -= 1
                raise ClientError({"Error": {"Code": self.code, "Message": "injected"}}, name)
            return real(**request)

        return call


class ThrottledShard(Wrapper):
    """Throttles every GetRecords of one shard while ``throttling``; counts those refusals.

    It follows the shard's iterators (from GetShardIterator, then each NextShardIterator),
    as Kinesis' per-shard read limit applies to them and to no other shard's.
    """

    def __init__(self, real: Any, shard_id: str) -> None:
        super().__init__(real)
        self.shard_id = shard_id
        self.throttling = True
        self.refused = 0
        self._iterators: set[str] = set()
        self._lock = threading.Lock()  # the processor reads on two threads

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        response = dict(self.real.get_shard_iterator(**request))
        if request["ShardId"] == self.shard_id:
            with self._lock:
                self._iterators.add(response["ShardIterator"])
        return response

    def get_records(self, **request: Any) -> dict[str, Any]:
        with self._lock:
            ours = request["ShardIterator"] in self._iterators
            if ours and self.throttling:
                self.refused += 1
                error = {"Error": {"Code": THROTTLED, "Message": "injected"}}
                raise ClientError(error, "GetRecords")
        response = dict(self.real.get_records(**request))
        if ours and response.get("NextShardIterator"):
            with self._lock:
                self._iterators.add(response["NextShardIterator"])
        return response


class MotoListShardsPaging(Wrapper):
    """moto 5.2.5 wants StreamName next to NextToken, which real Kinesis rejects: add it."""

    def __init__(self, real: Any, stream_name: str) -> None:
        super().__init__(real)
        self.stream_name = stream_name
        self.pages = 0

    def list_shards(self, **request: Any) -> dict[str, Any]:
        self.pages += 1
        if "NextToken" in request:
            assert "StreamName" not in request, "Kinesis rejects NextToken with StreamName"
            request["StreamName"] = self.stream_name
        return dict(self.real.list_shards(**request))


def read_all(stream: KinesisStream, shard_id: str, limit: int = 1000) -> list[StreamRecord]:
    records: list[StreamRecord] = []
    after = None
    while True:
        result = stream.read(shard_id, after, limit)
        if not result.records:
            return records
        records.extend(result.records)
        after = result.records[-1].sequence


def read_everything(stream: KinesisStream) -> dict[str, list[StreamRecord]]:
    return {shard.shard_id: read_all(stream, shard.shard_id) for shard in stream.list_shards()}


def assert_stored_once_in_order(
    stream: KinesisStream, entries: list[PutEntry], sequences: list[str]
) -> None:
    """Each entry is on the shard our hashing predicts, once, at the sequence put returned."""
    shards = stream.list_shards()
    stored = read_everything(stream)
    assert sum(len(records) for records in stored.values()) == len(entries)
    assert len(sequences) == len(entries)
    for entry, sequence in zip(entries, sequences, strict=True):
        shard = shard_for(entry.partition_key, shards).shard_id
        assert StreamRecord(sequence, entry.data) in stored[shard]
    for records in stored.values():
        by_key: dict[bytes, list[int]] = {}
        for record in records:
            key, _, number = record.data.partition(b"#")
            by_key.setdefault(key, []).append(int(number.rstrip(b".")))
        assert all(numbers == sorted(numbers) for numbers in by_key.values())


def interleaved(keys: int, per_key: int, size: int = 0) -> list[PutEntry]:
    return [
        PutEntry(f"plant-1/device-{k}", f"device-{k}#{n}".encode().ljust(size, b"."))
        for n in range(per_key)
        for k in range(keys)
    ]


def test_round_trip_keeps_order_per_key_on_the_predicted_shard(
    make_kinesis_stream: MakeStream,
) -> None:
    stream = make_kinesis_stream(shards=4)
    entries = interleaved(keys=40, per_key=5)

    sequences = stream.put(entries)

    assert_stored_once_in_order(stream, entries, sequences)
    assert len({shard_for(e.partition_key, stream.list_shards()) for e in entries}) == 4


def test_put_of_more_than_500_records_is_split_into_calls(make_kinesis_stream: MakeStream) -> None:
    stream = make_kinesis_stream(shards=2)
    entries = interleaved(keys=1201, per_key=1)

    sequences = stream.put(entries)

    assert_stored_once_in_order(stream, entries, sequences)


def test_put_of_more_than_5_mib_is_split_into_calls(make_kinesis_stream: MakeStream) -> None:
    stream = make_kinesis_stream(shards=2)
    entries = interleaved(keys=9, per_key=1, size=700 * 1024)
    largest_key = "plant-1/device-largest"
    exactly_1_mib = b"device-largest#0".ljust(MAX_RECORD_BYTES - len(largest_key), b".")
    entries.append(PutEntry(largest_key, exactly_1_mib))

    sequences = stream.put(entries)

    assert_stored_once_in_order(stream, entries, sequences)


def test_oversize_record_is_refused_before_anything_is_written(
    make_kinesis_stream: MakeStream,
) -> None:
    stream = make_kinesis_stream(shards=1)
    entries = [PutEntry("k", b"small#0"), PutEntry("k", b"x" * MAX_RECORD_BYTES)]

    with pytest.raises(InvalidInputError) as caught:
        stream.put(entries)

    assert caught.value.code == "record_too_large"
    assert read_everything(stream) == {"shardId-000000000000": []}


def test_partial_failure_retries_only_the_failed_records(
    make_kinesis_stream: MakeStream, moto_kinesis: Any
) -> None:
    client = FailingPuts(moto_kinesis, lambda i: i % 3 == 1, rounds=2, code=THROTTLED)
    sleeps: list[float] = []
    stream = make_kinesis_stream(shards=2, client=client, sleep=sleeps.append, max_delay=0.5)
    entries = interleaved(keys=30, per_key=3)

    sequences = stream.put(entries)

    assert_stored_once_in_order(stream, entries, sequences)
    assert sleeps
    assert all(0.0 <= delay <= 0.5 for delay in sleeps)


@pytest.mark.parametrize("whole_call", [False, True], ids=["per-record", "whole-call"])
def test_persistent_throttling_raises_throttled(
    make_kinesis_stream: MakeStream, moto_kinesis: Any, whole_call: bool
) -> None:
    if whole_call:
        client: Wrapper = RaisingCalls(moto_kinesis, "put_records", THROTTLED, times=99)
    else:
        client = FailingPuts(moto_kinesis, lambda i: True, rounds=None, code=THROTTLED)
    sleeps: list[float] = []
    stream = make_kinesis_stream(shards=1, client=client, sleep=sleeps.append, max_attempts=4)

    with pytest.raises(StreamThrottledError) as caught:
        stream.put(interleaved(keys=5, per_key=1))

    assert caught.value.retry_after > 0
    assert len(sleeps) == 3
    assert read_everything(stream) == {"shardId-000000000000": []}


def test_persistent_internal_failure_raises_unavailable(
    make_kinesis_stream: MakeStream, moto_kinesis: Any
) -> None:
    client = FailingPuts(moto_kinesis, lambda i: i == 0, rounds=None, code="InternalFailure")
    stream = make_kinesis_stream(shards=1, client=client, max_attempts=3)

    with pytest.raises(StreamUnavailableError, match="InternalFailure"):
        stream.put(interleaved(keys=3, per_key=1))


def test_unreachable_endpoint_raises_unavailable() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    client = kinesis_client(MOTO_REGION, nowhere, session=dummy_session(), max_attempts=1)
    stream = KinesisStream(client, "readings")

    with pytest.raises(StreamUnavailableError):
        stream.put([PutEntry("k", b"v")])
    with pytest.raises(StreamUnavailableError):
        stream.list_shards()
    with pytest.raises(StreamUnavailableError):
        stream.read("shardId-000000000000", None, 10)


def test_missing_stream_raises_unavailable(moto_kinesis: Any) -> None:
    stream = KinesisStream(moto_kinesis, "no-such-stream")

    with pytest.raises(StreamUnavailableError, match="ResourceNotFound"):
        stream.put([PutEntry("k", b"v")])
    with pytest.raises(StreamUnavailableError, match="ResourceNotFound"):
        stream.read("shardId-000000000000", None, 10)


def test_read_from_a_checkpoint_returns_exactly_the_records_after_it(
    make_kinesis_stream: MakeStream, moto_kinesis: Any
) -> None:
    counting = RaisingCalls(moto_kinesis)
    stream = make_kinesis_stream(shards=1, client=counting)
    shard = "shardId-000000000000"
    entries = [PutEntry("k", f"k#{n}".encode()) for n in range(10)]
    sequences = stream.put(entries)

    pages, after = [], None
    for _ in range(4):
        result = stream.read(shard, after, 3)
        pages.append([record.data for record in result.records])
        assert not result.end_of_shard
        after = result.records[-1].sequence if result.records else after
    replay = KinesisStream(moto_kinesis, stream.name).read(shard, sequences[6], 100)

    assert pages == [[e.data for e in entries[i : i + 3]] for i in (0, 3, 6, 9)]
    assert [record.data for record in replay.records] == [e.data for e in entries[7:]]
    assert replay.behind_ms is not None
    # continuing from the last record reuses Kinesis' iterator (5 GetShardIterator/s per shard)
    assert counting.counts["get_shard_iterator"] == 1
    rewound = stream.read(shard, sequences[1], 2)
    assert [record.data for record in rewound.records] == [e.data for e in entries[2:4]]
    assert counting.counts["get_shard_iterator"] == 2


def test_expired_iterator_resumes_from_the_checkpoint(
    make_kinesis_stream: MakeStream, moto_kinesis: Any
) -> None:
    client = RaisingCalls(moto_kinesis, "get_records", "ExpiredIteratorException")
    stream = make_kinesis_stream(shards=1, client=client)
    shard = "shardId-000000000000"
    entries = [PutEntry("k", f"k#{n}".encode()) for n in range(6)]
    stream.put(entries)
    first = stream.read(shard, None, 3)

    client.times = 1  # the cached iterator outlived its five minutes
    second = stream.read(shard, first.records[-1].sequence, 3)

    assert [record.data for record in second.records] == [e.data for e in entries[3:]]


def test_read_throttling_backs_off_and_returns_nothing(
    make_kinesis_stream: MakeStream, moto_kinesis: Any
) -> None:
    client = RaisingCalls(moto_kinesis, "get_records", THROTTLED)
    sleeps: list[float] = []
    stream = make_kinesis_stream(shards=1, client=client, sleep=sleeps.append)
    stream.put([PutEntry("k", b"k#0")])

    client.times = 2
    throttled = [stream.read("shardId-000000000000", None, 10) for _ in range(2)]
    recovered = stream.read("shardId-000000000000", None, 10)

    assert all(not r.records and not r.end_of_shard for r in throttled)
    # the backoff is handed to the caller (who skips the shard meanwhile), never slept here,
    # and it grows while the throttling lasts
    assert sleeps == []
    delays = [r.retry_after or 0.0 for r in throttled]
    assert all(delay > 0 for delay in delays)
    assert delays[0] <= delays[1]
    assert [record.data for record in recovered.records] == [b"k#0"]
    assert recovered.retry_after is None


def test_list_shards_follows_pagination(make_kinesis_stream: MakeStream, moto_kinesis: Any) -> None:
    stream = make_kinesis_stream(shards=5)
    paging = MotoListShardsPaging(moto_kinesis, stream.name)
    paged = KinesisStream(paging, stream.name, list_page_size=2)

    shards = paged.list_shards()

    assert paging.pages == 3
    assert_tiles_hash_space(shards)
    assert shards == stream.list_shards()


def assert_tiles_hash_space(shards: list[ShardInfo]) -> None:
    open_shards = sorted((s for s in shards if not s.closed), key=lambda s: s.start_hash)
    assert open_shards[0].start_hash == 0
    assert open_shards[-1].end_hash == HASH_SPACE_END
    for left, right in pairwise(open_shards):
        assert right.start_hash == left.end_hash + 1


def read_to_end(stream: KinesisStream, shard_id: str) -> tuple[list[bytes], bool]:
    data: list[bytes] = []
    after = None
    for _ in range(20):
        result = stream.read(shard_id, after, 100)
        data.extend(record.data for record in result.records)
        after = result.records[-1].sequence if result.records else after
        if result.end_of_shard:
            return data, True
    return data, False


def test_split_then_merge_shows_lineage_and_finishes_parents(
    make_kinesis_stream: MakeStream, moto_kinesis: Any
) -> None:
    stream = make_kinesis_stream(shards=2)
    entries = interleaved(keys=20, per_key=2)
    stream.put(entries)
    before = stream.list_shards()
    parent, sibling = before[0].shard_id, before[1].shard_id

    split_shard(moto_kinesis, stream.name, parent)
    children = [s for s in stream.list_shards() if s.parent_ids == (parent,)]
    merge_shards(moto_kinesis, stream.name, children[0].shard_id, children[1].shard_id)
    shards = {s.shard_id: s for s in stream.list_shards()}

    assert shards[parent].closed
    assert [(c.start_hash, c.end_hash) for c in children] == [
        (before[0].start_hash, (before[0].start_hash + before[0].end_hash + 1) // 2 - 1),
        ((before[0].start_hash + before[0].end_hash + 1) // 2, before[0].end_hash),
    ]
    assert all(shards[c.shard_id].closed for c in children)
    merged = [s for s in shards.values() if len(s.parent_ids) == 2]
    assert [m.parent_ids for m in merged] == [(children[0].shard_id, children[1].shard_id)]
    assert not merged[0].closed
    assert_tiles_hash_space(list(shards.values()))
    # a closed parent keeps its records and, once read through, lets its children start
    parent_data, parent_ended = read_to_end(stream, parent)
    assert parent_ended
    assert parent_data == [
        e.data for e in entries if shard_for(e.partition_key, before).shard_id == parent
    ]
    assert all(read_to_end(stream, c.shard_id)[1] for c in children)
    assert not read_to_end(stream, sibling)[1]
    assert not read_to_end(stream, merged[0].shard_id)[1]


def test_update_shard_count_rescales_uniformly(
    make_kinesis_stream: MakeStream, moto_kinesis: Any
) -> None:
    stream = make_kinesis_stream(shards=2)

    update_shard_count(moto_kinesis, stream.name, 4)

    shards = stream.list_shards()
    assert len([s for s in shards if not s.closed]) == 4
    assert_tiles_hash_space(shards)


def test_create_stream_with_kms_key_is_encrypted(moto_kinesis: Any) -> None:
    arn = create_stream(moto_kinesis, "encrypted-readings", 1, kms_key_id="alias/plantstream")

    summary = moto_kinesis.describe_stream_summary(StreamName="encrypted-readings")
    moto_kinesis.delete_stream(StreamName="encrypted-readings")

    assert arn.endswith(":stream/encrypted-readings")
    assert summary["StreamDescriptionSummary"]["EncryptionType"] == "KMS"
    assert summary["StreamDescriptionSummary"]["KeyId"] == "alias/plantstream"


def test_a_throttled_shard_is_skipped_while_the_others_keep_flowing(
    make_kinesis_stream: MakeStream,
    moto_kinesis: Any,
    database_url: str,
    db: psycopg.Connection,
    redis_client: redis.Redis,
    make_processor: Callable[..., Processor],
) -> None:
    """One shard refuses every read; the processor stores the other shard's readings anyway,
    without asking the refusing one again before its backoff ran out, and catches up after."""
    probe = make_kinesis_stream(shards=2)
    throttled_shard, free_shard = (s.shard_id for s in probe.list_shards())
    client = ThrottledShard(moto_kinesis, throttled_shard)
    stream = KinesisStream(client, probe.name)
    produced = Produced({})
    produce(stream, simulated_readings(seconds=80, facilities=2, machines=4), produced)
    shards = stream.list_shards()
    on_shard: dict[str, dict[tuple[str, str, str, int], float]] = {}
    for key, value in produced.readings.items():
        shard = shard_for(partition_key(key[0], key[1]), shards).shard_id
        on_shard.setdefault(shard, {})[key] = value
    assert set(on_shard) == {throttled_shard, free_shard}
    free_records = len(read_all(probe, free_shard))
    batch_records = 5

    processor = make_processor(database_url, stream, redis_client, batch_records=batch_records)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,), name="processor", daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: stored_readings(db) == on_shard[free_shard],
            timeout=60,
            what="the free shard's readings stored",
        )
        # the throttled shard is still refused: none of it stored, and it was asked again only
        # as its growing backoff allowed, not once per pass over the shards (at least one
        # batch of the free shard per pass)
        assert client.refused >= 1
        passes = free_records / batch_records
        assert client.refused < passes / 2, f"{client.refused} refused reads in {passes} passes"
        client.throttling = False
        wait_until(
            lambda: stored_readings(db) == produced.readings,
            timeout=60,
            what="the throttled shard's readings stored once it answers again",
        )
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert_rollups_match_raw(db)
    assert_books_balance(db)
