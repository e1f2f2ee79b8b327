"""The Kinesis Data Streams backend of the stream contract, over an injected boto3 client.

Also the admin helpers (create, split, merge, rescale) used by tests and local tooling.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from plantstream.errors import InvalidInputError, StreamThrottledError, StreamUnavailableError
from plantstream.stream.base import PutEntry, ReadResult, ShardInfo, StreamRecord

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # data plus partition key
MAX_PARTITION_KEY_CHARS = 256
MAX_RECORDS_PER_READ = 10_000

THROTTLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "KMSThrottlingException",
        "ThrottlingException",
    }
)
# shard write limits are per second: a second later a throttled shard has fresh capacity
_THROTTLE_RETRY_AFTER = 1.0
_READ_RETRY_BASE = 0.2  # one read slot of a shard (5 reads/s)
_jitter = random.Random()  # noqa: S311 - backoff jitter, not security


class KinesisClient(Protocol):
    """The four calls of a boto3 Kinesis client the stream uses (a seam for fakes)."""

    def put_records(self, **kwargs: Any) -> dict[str, Any]: ...
    def list_shards(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_records(self, **kwargs: Any) -> dict[str, Any]: ...


def kinesis_client(
    region: str | None,
    endpoint_url: str | None = None,
    *,
    session: Any = None,
    max_attempts: int = 3,
) -> Any:
    """A boto3 Kinesis client with standard-mode retries and bounded connect/read timeouts.

    ``session`` (a ``boto3.Session``) supplies credentials; the default chain otherwise.
    """
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=5,
        # GetRecords may return up to 10 MB; a stalled socket must still fail within seconds
        read_timeout=20,
        tcp_keepalive=True,
    )
    factory = session if session is not None else boto3.session.Session()
    return factory.client("kinesis", region_name=region, endpoint_url=endpoint_url, config=config)


@dataclass(slots=True)
class _Cursor:
    position: str | None  # the last sequence handed out, or the checkpoint read from
    iterator: str


class KinesisStream:
    """A Kinesis data stream as a ``Stream``: batched, retried puts and checkpointed reads.

    ``sleep`` is called for every put backoff (inject a recorder in tests). ``put`` may be called
    from many threads; ``read`` caches per-shard iterators, so give each reader its own instance.
    """

    def __init__(
        self,
        client: KinesisClient,
        stream_name: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 6,
        base_delay: float = 0.05,
        max_delay: float = 2.0,
        list_page_size: int | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.name = stream_name
        self._client = client
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._list_page_size = list_page_size
        self._cursors: dict[str, _Cursor] = {}
        self._read_throttles: dict[str, int] = {}
        self._closed_ends: dict[str, str] = {}

    def close(self) -> None:
        """Forget cached iterators; the injected client belongs to the caller."""
        self._cursors.clear()
        self._read_throttles.clear()

    def _delay(self, attempt: int) -> float:
        # full jitter: concurrent writers that were throttled together spread out
        return _jitter.uniform(0.0, min(self._max_delay, self._base_delay * 2**attempt))

    def _read_delay(self, attempt: int) -> float:
        # at least half the exponential step: a read retried at once would only use up the
        # shard's five reads a second again; the jitter spreads readers that met there
        step = min(self._max_delay, _READ_RETRY_BASE * 2**attempt)
        return _jitter.uniform(step / 2, step)

    # -- writing -----------------------------------------------------------------------

    def put(self, entries: Sequence[PutEntry]) -> list[str]:
        """Write ``entries`` in as few PutRecords calls as the limits allow; sequences in order.

        Raises ``InvalidInputError`` (nothing written) for a record over 1 MiB or a bad key,
        ``StreamThrottledError`` when throttling outlasts the retries and
        ``StreamUnavailableError`` for any other failure.
        """
        sizes = [_checked_size(entry) for entry in entries]
        sequences: list[str] = [""] * len(entries)
        for call in _plan_calls(entries, sizes):
            self._put_call(entries, call, sequences)
        return sequences

    def _put_call(self, entries: Sequence[PutEntry], call: list[int], out: list[str]) -> None:
        pending = call
        codes: set[str] = set()
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(self._delay(attempt - 1))
            records = [
                {"Data": entries[i].data, "PartitionKey": entries[i].partition_key} for i in pending
            ]
            try:
                response = self._client.put_records(StreamName=self.name, Records=records)
            except ClientError as exc:
                code = _error_code(exc)
                if code not in THROTTLE_CODES:
                    raise StreamUnavailableError(f"Kinesis {self.name}: {code}") from exc
                codes = {code}
                continue
            except BotoCoreError as exc:
                raise StreamUnavailableError(f"Kinesis {self.name} unreachable: {exc}") from exc
            failed = []
            codes = set()
            for index, result in zip(pending, response["Records"], strict=True):
                if result.get("ErrorCode"):
                    failed.append(index)
                    codes.add(result["ErrorCode"])
                else:
                    out[index] = result["SequenceNumber"]
            pending = failed
            if not pending:
                return
        summary = ", ".join(sorted(codes))
        message = f"Kinesis {self.name}: {len(pending)} records not written ({summary})"
        if codes & THROTTLE_CODES:
            raise StreamThrottledError(message, retry_after=_THROTTLE_RETRY_AFTER)
        raise StreamUnavailableError(message)

    # -- reading -----------------------------------------------------------------------

    def list_shards(self) -> list[ShardInfo]:
        """Every shard Kinesis still lists (open and closed), with lineage and hash ranges."""
        request: dict[str, Any] = {"StreamName": self.name}
        if self._list_page_size:
            request["MaxResults"] = self._list_page_size
        shards: list[ShardInfo] = []
        closed_ends: dict[str, str] = {}
        while True:
            response = self._call(self._client.list_shards, **request)
            for raw in response.get("Shards", []):
                shards.append(_shard_info(raw))
                end = raw["SequenceNumberRange"].get("EndingSequenceNumber")
                if end is not None:
                    closed_ends[raw["ShardId"]] = end
            token = response.get("NextToken")
            if not token:
                break
            # the token names the stream; Kinesis rejects a request that also names it
            request = {"NextToken": token}
            if self._list_page_size:
                request["MaxResults"] = self._list_page_size
        self._closed_ends = closed_ends
        return shards

    def read(self, shard_id: str, after: str | None, limit: int) -> ReadResult:
        """Up to ``limit`` (at most 10,000) records after ``after``.

        Throttled: no records and a ``retry_after`` growing with each throttle in a row
        (it never sleeps). Raises ``StreamUnavailableError`` when the shard or stream
        cannot be read.
        """
        limit = max(1, min(limit, MAX_RECORDS_PER_READ))
        cursor = self._cursors.pop(shard_id, None)
        iterator: str | None = None
        try:
            if cursor is not None and cursor.position == after:
                iterator = cursor.iterator
            else:
                iterator = self._iterator(shard_id, after)
            try:
                response = self._client.get_records(ShardIterator=iterator, Limit=limit)
            except ClientError as exc:
                if _error_code(exc) != "ExpiredIteratorException":
                    raise
                # iterators live five minutes; a reader that paused longer resumes from `after`
                iterator = self._iterator(shard_id, after)
                response = self._client.get_records(ShardIterator=iterator, Limit=limit)
        except ClientError as exc:
            code = _error_code(exc)
            if code in THROTTLE_CODES:
                # a shard serves five reads a second to all readers: tell the caller when to
                # come back rather than sleep here, which would stall its other shards too
                attempt = self._read_throttles.get(shard_id, 0)
                self._read_throttles[shard_id] = attempt + 1
                if iterator is not None:  # still valid: the retry needs no new one
                    self._cursors[shard_id] = _Cursor(after, iterator)
                return ReadResult([], end_of_shard=False, retry_after=self._read_delay(attempt))
            raise StreamUnavailableError(f"Kinesis {self.name}/{shard_id}: {code}") from exc
        except BotoCoreError as exc:
            raise StreamUnavailableError(f"Kinesis {self.name} unreachable: {exc}") from exc
        self._read_throttles.pop(shard_id, None)
        records = [
            StreamRecord(sequence=raw["SequenceNumber"], data=bytes(raw["Data"]))
            for raw in response.get("Records", [])
        ]
        position = records[-1].sequence if records else after
        next_iterator = response.get("NextShardIterator")
        end = next_iterator is None or (not records and self._read_past_end(shard_id, position))
        if next_iterator is not None and not end:
            self._cursors[shard_id] = _Cursor(position, str(next_iterator))
        return ReadResult(records, end_of_shard=end, behind_ms=response.get("MillisBehindLatest"))

    def _iterator(self, shard_id: str, after: str | None) -> str:
        request: dict[str, Any] = {"StreamName": self.name, "ShardId": shard_id}
        if after is None:
            request["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            request["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            request["StartingSequenceNumber"] = after
        return str(self._client.get_shard_iterator(**request)["ShardIterator"])

    def _read_past_end(self, shard_id: str, position: str | None) -> bool:
        # Kinesis ends a closed shard by omitting NextShardIterator; emulators that always
        # return one (moto) would keep a parent open forever, so also compare with the
        # EndingSequenceNumber that list_shards saw
        end = self._closed_ends.get(shard_id)
        return end is not None and int(position or 0) >= int(end)

    def _call(self, operation: Callable[..., dict[str, Any]], **request: Any) -> dict[str, Any]:
        try:
            return operation(**request)
        except ClientError as exc:
            code = _error_code(exc)
            if code in THROTTLE_CODES:
                raise StreamThrottledError(
                    f"Kinesis {self.name}: {code}", retry_after=_THROTTLE_RETRY_AFTER
                ) from exc
            raise StreamUnavailableError(f"Kinesis {self.name}: {code}") from exc
        except BotoCoreError as exc:
            raise StreamUnavailableError(f"Kinesis {self.name} unreachable: {exc}") from exc


def _checked_size(entry: PutEntry) -> int:
    if not 1 <= len(entry.partition_key) <= MAX_PARTITION_KEY_CHARS:
        raise InvalidInputError(
            "bad_partition_key", f"partition key must be 1-{MAX_PARTITION_KEY_CHARS} characters"
        )
    size = len(entry.data) + len(entry.partition_key.encode())
    if size > MAX_RECORD_BYTES:
        raise InvalidInputError(
            "record_too_large", f"stream record of {size} bytes exceeds {MAX_RECORD_BYTES}"
        )
    return size


def _plan_calls(entries: Sequence[PutEntry], sizes: Sequence[int]) -> list[list[int]]:
    """Indices grouped into PutRecords calls within the count and byte limits.

    A partition key appears at most once per call, each later record of a key in a later
    call: retrying only a call's failed records then never reorders a device's records.
    """
    calls: list[list[int]] = []
    call_bytes: list[int] = []
    first_free: dict[str, int] = {}
    for index, entry in enumerate(entries):
        target = len(calls)
        for candidate in range(first_free.get(entry.partition_key, 0), len(calls)):
            if (
                len(calls[candidate]) < MAX_RECORDS_PER_CALL
                and call_bytes[candidate] + sizes[index] <= MAX_BYTES_PER_CALL
            ):
                target = candidate
                break
        if target == len(calls):
            calls.append([])
            call_bytes.append(0)
        calls[target].append(index)
        call_bytes[target] += sizes[index]
        first_free[entry.partition_key] = target + 1
    return calls


def _shard_info(raw: dict[str, Any]) -> ShardInfo:
    parents = tuple(raw[key] for key in ("ParentShardId", "AdjacentParentShardId") if raw.get(key))
    return ShardInfo(
        shard_id=raw["ShardId"],
        parent_ids=parents,
        start_hash=int(raw["HashKeyRange"]["StartingHashKey"]),
        end_hash=int(raw["HashKeyRange"]["EndingHashKey"]),
        closed="EndingSequenceNumber" in raw["SequenceNumberRange"],
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


# -- admin helpers (tests, local tooling); botocore errors propagate unchanged -------------


def create_stream(client: Any, name: str, shards: int, *, kms_key_id: str | None = None) -> str:
    """Create a provisioned stream, encrypt it with ``kms_key_id`` if given; return its ARN.

    Returns once the stream is ACTIVE (and encrypted).
    """
    client.create_stream(
        StreamName=name, ShardCount=shards, StreamModeDetails={"StreamMode": "PROVISIONED"}
    )
    wait_active(client, name)
    if kms_key_id is not None:
        client.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=kms_key_id)
        wait_active(client, name)
    summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return str(summary["StreamARN"])


def wait_active(client: Any, name: str, *, delay_seconds: int = 1, max_attempts: int = 300) -> None:
    """Block until the stream is ACTIVE (creation and resharding take seconds to minutes)."""
    client.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": delay_seconds, "MaxAttempts": max_attempts}
    )


def split_shard(
    client: Any, name: str, shard_id: str, new_starting_hash_key: int | None = None
) -> None:
    """Split ``shard_id`` at ``new_starting_hash_key`` (default: the middle of its range)."""
    if new_starting_hash_key is None:
        shard = next(s for s in KinesisStream(client, name).list_shards() if s.shard_id == shard_id)
        new_starting_hash_key = (shard.start_hash + shard.end_hash + 1) // 2
    client.split_shard(
        StreamName=name, ShardToSplit=shard_id, NewStartingHashKey=str(new_starting_hash_key)
    )
    wait_active(client, name)


def merge_shards(client: Any, name: str, shard_id: str, adjacent_shard_id: str) -> None:
    """Merge two shards with adjacent hash ranges into one child."""
    client.merge_shards(
        StreamName=name, ShardToMerge=shard_id, AdjacentShardToMerge=adjacent_shard_id
    )
    wait_active(client, name)


def update_shard_count(client: Any, name: str, target: int) -> None:
    """Rescale to ``target`` open shards with uniform hash ranges (splits and merges)."""
    client.update_shard_count(
        StreamName=name, TargetShardCount=target, ScalingType="UNIFORM_SCALING"
    )
    wait_active(client, name)
