"""The processor with its post-commit hooks (detection, alert webhooks), built from settings.

Adding a hook (or, later, a sink) is one entry in ``post_commit_hooks``.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import redis

from plantstream.detect import DetectionEngine
from plantstream.detect.webhook import WebhookNotifier
from plantstream.errors import ConfigError
from plantstream.model import TimeWindow
from plantstream.processor import BatchHook, Processor, ProcessorConfig
from plantstream.settings import Settings
from plantstream.stream.base import Stream


def post_commit_hooks(
    settings: Settings,
    *,
    database_url: str,
    redis_client: redis.Redis,
    connect: Callable[[str], psycopg.Connection] | None = None,
) -> list[BatchHook]:
    """What runs after each committed batch: detection, notifying a webhook when configured."""
    if not settings.detection:
        return []
    notify = None
    if settings.alert_webhook_url:
        if settings.alert_webhook_secret is None:
            raise ConfigError("PLANTSTREAM_ALERT_WEBHOOK_SECRET is required with a webhook URL")
        notify = WebhookNotifier(
            settings.alert_webhook_url, settings.alert_webhook_secret.get_secret_value().encode()
        ).notify
    return [
        DetectionEngine(
            database_url=database_url, redis_client=redis_client, notify=notify, connect=connect
        )
    ]


def build_processor(
    settings: Settings,
    *,
    database_url: str,
    stream: Stream,
    redis_client: redis.Redis,
    window: TimeWindow,
    connect: Callable[[str], psycopg.Connection] | None = None,
) -> Processor:
    """A processor of ``stream`` into PostgreSQL and Redis, with its hooks."""
    return Processor(
        database_url=database_url,
        stream=stream,
        hooks=post_commit_hooks(
            settings, database_url=database_url, redis_client=redis_client, connect=connect
        ),
        redis_client=redis_client,
        connect=connect,
        config=ProcessorConfig(
            stream_name=stream.name,
            batch_records=settings.processor_batch_records,
            lease_seconds=settings.lease_seconds,
            window=window,
        ),
    )
