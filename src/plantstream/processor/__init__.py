"""The exactly-once processor: stream shards -> PostgreSQL, then the post-commit sinks."""

from plantstream.processor.lifecycle import Lease, ShardLifecycle, ShardListener
from plantstream.processor.runner import Processor, ProcessorConfig
from plantstream.processor.sinks import (
    BatchHook,
    DetectionSink,
    PostCommitSink,
    ProcessSink,
    RedisLatestSink,
    SinkBatch,
)

__all__ = [
    "BatchHook",
    "DetectionSink",
    "Lease",
    "PostCommitSink",
    "ProcessSink",
    "Processor",
    "ProcessorConfig",
    "RedisLatestSink",
    "ShardLifecycle",
    "ShardListener",
    "SinkBatch",
]
