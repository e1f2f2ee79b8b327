"""Post-commit sinks: views of the committed data (Redis latest values, detection) fed after
every commit, each catching up on what it missed. Register more with ``Processor.register``;
``ProcessSink`` runs a hook (detection) in a child process of its own.
"""

from plantstream.processor.sinks.base import PostCommitSink, SinkBatch
from plantstream.processor.sinks.detection import BatchHook, DetectionSink
from plantstream.processor.sinks.manager import SinkManager
from plantstream.processor.sinks.process import ProcessSink
from plantstream.processor.sinks.process_child import HookFactory
from plantstream.processor.sinks.redis_latest import RedisLatestSink

__all__ = [
    "BatchHook",
    "DetectionSink",
    "HookFactory",
    "PostCommitSink",
    "ProcessSink",
    "RedisLatestSink",
    "SinkBatch",
    "SinkManager",
]
