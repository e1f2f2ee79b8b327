"""The processor with its post-commit sinks (Redis latest, detection), built from settings.

Adding a sink is one entry in ``post_commit_sinks``.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import redis

from plantstream.detect import DetectionEngine
from plantstream.detect.machine_models import StoredMachines
from plantstream.detect.webhook import WebhookNotifier
from plantstream.errors import ConfigError
from plantstream.ingest.metrics import facility_label
from plantstream.ingest.quotas import backlog_counters
from plantstream.model import TimeWindow
from plantstream.model.signals import DEFAULT_CATALOG, SignalCatalog
from plantstream.processor import (
    BatchHook,
    DetectionSink,
    PostCommitSink,
    Processor,
    ProcessorConfig,
    RedisLatestSink,
)
from plantstream.processor.sinks.backlog import BacklogSink
from plantstream.settings import Settings
from plantstream.stream.base import Stream


def detection_hooks(
    settings: Settings,
    *,
    database_url: str,
    redis_client: redis.Redis,
    connect: Callable[[str], psycopg.Connection] | None = None,
) -> list[BatchHook]:
    """Detection, notifying a webhook when one is configured (none when detection is off);
    it also watches the machines that have a stored model (``detect/machine_models.py``)."""
    if not settings.detection:
        return []
    notify = None
    if settings.alert_webhook_url:
        if settings.alert_webhook_secret is None:
            raise ConfigError("PLANTSTREAM_ALERT_WEBHOOK_SECRET is required with a webhook URL")
        notify = WebhookNotifier(
            settings.alert_webhook_url, settings.alert_webhook_secret.get_secret_value().encode()
        ).notify
    engine = DetectionEngine(
        database_url=database_url, redis_client=redis_client, notify=notify, connect=connect
    )
    # the machines with a stored model (multivariate), over the engine's own connection
    engine.machines = StoredMachines(engine.connection)
    return [engine]


def post_commit_sinks(
    settings: Settings,
    *,
    database_url: str,
    redis_client: redis.Redis,
    connect: Callable[[str], psycopg.Connection] | None = None,
) -> list[PostCommitSink]:
    """What runs after each committed batch, in order: Redis latest values, then detection."""
    sinks: list[PostCommitSink] = [
        RedisLatestSink(
            redis_client,
            chunk=settings.redis_chunk_sensors,
            max_ahead_us=int(settings.latest_max_ahead_seconds * 1_000_000),
        )
    ]
    if settings.quota_backlog_readings:  # ingest's backlog quota: readings stored come off it
        sinks.append(BacklogSink(backlog_counters(settings, redis_client)))
    sinks += [
        DetectionSink(hook)
        for hook in detection_hooks(
            settings, database_url=database_url, redis_client=redis_client, connect=connect
        )
    ]
    return sinks


def build_processor(
    settings: Settings,
    *,
    database_url: str,
    conninfo: Callable[[], str] | None = None,
    stream: Stream,
    redis_client: redis.Redis,
    window: TimeWindow,
    connect: Callable[[str], psycopg.Connection] | None = None,
    catalog: SignalCatalog = DEFAULT_CATALOG,
) -> Processor:
    """A processor of ``stream`` into PostgreSQL, then its sinks.

    ``conninfo`` gives the processor's pool the URL to use now (rotated credentials are
    followed); ``connect`` is the detection engine's; ``catalog`` the facilities' signals
    (the runtime's ``StoreCatalog``) readings are re-validated and typed against.
    """
    facility_label.limit = settings.metrics_max_facilities  # process-wide, like the metrics
    return Processor(
        database_url=conninfo or database_url,
        stream=stream,
        sinks=post_commit_sinks(
            settings, database_url=database_url, redis_client=redis_client, connect=connect
        ),
        config=ProcessorConfig(
            stream_name=stream.name,
            batch_records=settings.processor_batch_records,
            lease_seconds=settings.lease_seconds,
            window=window,
            max_sensors_per_facility=settings.quota_max_sensors_per_facility,
            trim_every=settings.stream_trim_every_seconds,
            catalog=catalog,
        ),
    )
