"""Opening the configured stream backend: a registry of openers, chosen by ``settings.stream``.

Adding a backend is one module with an opener and one ``BACKENDS[...]`` line below (and its
name among ``Settings.stream``'s choices, which are validated at start-up).
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from plantstream.errors import ConfigError
from plantstream.settings import Settings
from plantstream.stream.base import Stream
from plantstream.stream.redis_streams import RedisStream

Opener = Callable[[Settings, redis.Redis], Stream]


def open_redis_stream(settings: Settings, client: redis.Redis) -> Stream:
    """Redis Streams, one key per shard; created with ``stream_shards`` if it does not exist."""
    stream = RedisStream(
        client,
        settings.stream_name,
        retention_hours=settings.stream_retention_hours,
        max_entries_per_shard=settings.stream_max_entries_per_shard,
    )
    stream.ensure(settings.stream_shards)
    return stream


def open_kinesis_stream(settings: Settings, _client: redis.Redis) -> Stream:
    """An existing Kinesis data stream (``PLANTSTREAM_KINESIS_STREAM_NAME``)."""
    from plantstream.stream.kinesis import KinesisStream, kinesis_client  # boto3: the aws extra

    name = settings.kinesis_stream_name
    if not name:
        raise ConfigError("PLANTSTREAM_KINESIS_STREAM_NAME is required with stream=kinesis")
    client = kinesis_client(settings.aws_region, endpoint_url=settings.kinesis_endpoint_url)
    return KinesisStream(client=client, stream_name=name)


BACKENDS: dict[str, Opener] = {
    "redis": open_redis_stream,
    "kinesis": open_kinesis_stream,
}


def open_stream(settings: Settings, *, redis_client: redis.Redis) -> Stream:
    """The stream the settings name.

    ``redis_client`` (from ``plantstream.runtime.open_redis``) carries the Redis stream; other
    backends do not use it.
    """
    opener = BACKENDS.get(settings.stream)
    if opener is None:
        raise ConfigError(
            f"unknown stream backend {settings.stream!r}; one of: {', '.join(BACKENDS)}"
        )
    return opener(settings, redis_client)
