"""The processor with its post-commit sinks (Redis latest, detection), built from settings.

Adding a sink is one entry in ``post_commit_sinks``. Detection runs in a child process of its
own (``ProcessSink``) unless ``detection_process`` is off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import redis
from pydantic import SecretStr

from plantstream.detect import DetectionEngine
from plantstream.detect.machine_models import StoredMachines
from plantstream.detect.webhook import WebhookNotifier
from plantstream.errors import ConfigError
from plantstream.ingest.metrics import facility_label
from plantstream.ingest.quotas import backlog_counters
from plantstream.local.services import Endpoints, resolve_endpoints
from plantstream.model import TimeWindow
from plantstream.model.signals import DEFAULT_CATALOG, SignalCatalog
from plantstream.processor import (
    BatchHook,
    DetectionSink,
    PostCommitSink,
    Processor,
    ProcessorConfig,
    ProcessSink,
    RedisLatestSink,
)
from plantstream.processor.sinks.backlog import BacklogSink
from plantstream.runtime.clients import REDIS_OPTIONS, open_redis
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


@dataclass(frozen=True, slots=True)
class DetectionInChild:
    """Builds, inside the detection child, the engine ``detection_hooks`` builds, on the
    parent's servers: it pickles as settings alone (secrets stay ``SecretStr``, never on a
    command line), never as an engine, connection or client."""

    settings: Settings

    @classmethod
    def of(cls, settings: Settings, endpoints: Endpoints) -> DetectionInChild:
        """The parent's settings with the URLs of the servers it started (embedded) filled
        in: the child connects to them rather than start its own. A configured server is
        resolved again in the child, its credentials as they rotate."""
        update: dict[str, object] = {}
        if settings.database_url is None or "postgres" in endpoints.embedded_servers:
            update["database_url"] = SecretStr(endpoints.database_url)
        if settings.redis_url is None or "redis" in endpoints.embedded_servers:
            update["redis_url"] = SecretStr(endpoints.redis_url)
        return cls(settings.model_copy(update=update))

    def __call__(self) -> BatchHook:
        endpoints = resolve_endpoints(self.settings)  # both URLs are set: it starts nothing
        redis_client = open_redis(
            endpoints.redis_url,
            cluster=self.settings.redis_cluster,
            credentials=endpoints.redis_auth,
            **REDIS_OPTIONS["processor"],
        )
        (engine,) = detection_hooks(
            self.settings,
            database_url=endpoints.database_url,
            redis_client=redis_client,
            connect=endpoints.connect,
        )
        return engine


def post_commit_sinks(
    settings: Settings,
    *,
    database_url: str,
    redis_client: redis.Redis,
    connect: Callable[[str], psycopg.Connection] | None = None,
    endpoints: Endpoints | None = None,
) -> list[PostCommitSink]:
    """What runs after each committed batch, in order: Redis latest values, then detection.

    With ``settings.detection_process`` and the ``endpoints`` a child can reach, detection
    runs in a child process (``ps-detect``); otherwise on the processor's thread.
    """
    sinks: list[PostCommitSink] = [
        RedisLatestSink(
            redis_client,
            chunk=settings.redis_chunk_sensors,
            max_ahead_us=int(settings.latest_max_ahead_seconds * 1_000_000),
        )
    ]
    if settings.quota_backlog_readings:  # ingest's backlog quota: readings stored come off it
        sinks.append(BacklogSink(backlog_counters(settings, redis_client)))
    if settings.detection and settings.detection_process and endpoints is not None:
        sinks.append(
            ProcessSink(DetectionInChild.of(settings, endpoints), log_level=settings.log_level)
        )
        return sinks
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
    endpoints: Endpoints | None = None,
) -> Processor:
    """A processor of ``stream`` into PostgreSQL, then its sinks.

    ``conninfo`` gives the processor's pool the URL to use now (rotated credentials are
    followed); ``connect`` is the detection engine's; ``catalog`` the facilities' signals
    (the runtime's ``StoreCatalog``) readings are re-validated and typed against;
    ``endpoints`` the servers a detection child connects to (none: detection in this process).
    """
    facility_label.limit = settings.metrics_max_facilities  # process-wide, like the metrics
    return Processor(
        database_url=conninfo or database_url,
        stream=stream,
        sinks=post_commit_sinks(
            settings,
            database_url=database_url,
            redis_client=redis_client,
            connect=connect,
            endpoints=endpoints,
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
