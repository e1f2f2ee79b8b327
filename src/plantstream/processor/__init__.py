"""The exactly-once processor: stream shards -> PostgreSQL and Redis."""

from plantstream.processor.runner import BatchHook, Processor, ProcessorConfig

__all__ = ["BatchHook", "Processor", "ProcessorConfig"]
