"""Opening the configured stream backend from settings."""

from __future__ import annotations

from redis.credentials import CredentialProvider

from plantstream.errors import ConfigError
from plantstream.settings import Settings
from plantstream.store.redis_client import open_redis
from plantstream.stream.base import Stream
from plantstream.stream.redis_streams import RedisStream


def open_stream(
    settings: Settings, *, redis_url: str, redis_auth: CredentialProvider | None = None
) -> Stream:
    """The stream the settings name; the local Redis stream is created if it does not exist."""
    if settings.stream == "kinesis":
        from plantstream.stream.kinesis import KinesisStream, kinesis_client

        name = settings.kinesis_stream_name
        if not name:
            raise ConfigError("PLANTSTREAM_KINESIS_STREAM_NAME is required with stream=kinesis")
        client = kinesis_client(settings.aws_region, endpoint_url=settings.kinesis_endpoint_url)
        return KinesisStream(client=client, stream_name=name)
    stream = RedisStream(
        open_redis(
            redis_url,
            cluster=settings.redis_cluster,
            credentials=redis_auth,
            socket_timeout=None,  # as before: reads of an idle stream may block
            health_check_interval=10,
        ),
        settings.stream_name,
        retention_hours=settings.stream_retention_hours,
    )
    stream.ensure(settings.stream_shards)
    return stream
