"""The sharded stream: Kinesis in AWS, Redis Streams locally, one contract for both."""

from plantstream.stream.base import (
    PutEntry,
    ReadResult,
    ShardInfo,
    Stream,
    StreamConsumer,
    StreamProducer,
    StreamRecord,
)
from plantstream.stream.hashing import hash_key, partition_key, shard_for
from plantstream.stream.records import DeviceColumns, decode_record, pack_readings
from plantstream.stream.redis_streams import RedisStream

__all__ = [
    "DeviceColumns",
    "PutEntry",
    "ReadResult",
    "RedisStream",
    "ShardInfo",
    "Stream",
    "StreamConsumer",
    "StreamProducer",
    "StreamRecord",
    "decode_record",
    "hash_key",
    "pack_readings",
    "partition_key",
    "shard_for",
]
