"""``plantstream serve ingest|processor|api|all``: run a role (the ECS entry point)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated

import psycopg
import redis
import typer
from redis.credentials import CredentialProvider

from plantstream.detect import DetectionEngine
from plantstream.detect.webhook import WebhookNotifier
from plantstream.errors import ConfigError
from plantstream.local import resolve_endpoints
from plantstream.local.watchdog import watch_embedded
from plantstream.model import TimeWindow
from plantstream.processor import BatchHook, Processor, ProcessorConfig
from plantstream.settings import Settings, load_settings
from plantstream.store.redis_client import open_redis
from plantstream.store.schema import migrate
from plantstream.stream.factory import open_stream


class Role(StrEnum):
    INGEST = "ingest"
    PROCESSOR = "processor"
    API = "api"
    ALL = "all"


def window_of(settings: Settings) -> TimeWindow:
    return TimeWindow(
        max_past_us=settings.max_past_seconds * 1_000_000,
        max_future_us=settings.max_future_seconds * 1_000_000,
    )


def build_detection(
    settings: Settings,
    database_url: str,
    client: redis.Redis,
    connect: Callable[[str], psycopg.Connection] | None = None,
) -> list[BatchHook]:
    """The detection hook, with webhook notifications when a URL is configured."""
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
            database_url=database_url, redis_client=client, notify=notify, connect=connect
        )
    ]


def build_processor(
    settings: Settings,
    database_url: str,
    redis_url: str,
    *,
    connect: Callable[[str], psycopg.Connection] | None = None,
    redis_auth: CredentialProvider | None = None,
) -> Processor:
    stream = open_stream(settings, redis_url=redis_url, redis_auth=redis_auth)
    client = open_redis(
        redis_url,
        cluster=settings.redis_cluster,
        credentials=redis_auth,
        socket_timeout=5,
        socket_connect_timeout=2,
    )
    return Processor(
        database_url=database_url,
        stream=stream,
        hooks=build_detection(settings, database_url, client, connect),
        redis_client=client,
        connect=connect,
        config=ProcessorConfig(
            stream_name=stream.name,
            batch_records=settings.processor_batch_records,
            lease_seconds=settings.lease_seconds,
            window=window_of(settings),
        ),
    )


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: ECS stops tasks with SIGTERM, then drains."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        logging.getLogger("plantstream").info("signal %d: draining", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def serve(
    role: Annotated[Role, typer.Argument(help="which role to run")],
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="skip migrations")] = False,
) -> None:
    """Run a role against the configured services until SIGTERM."""
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    endpoints = resolve_endpoints(settings)
    if not no_migrate:
        migrate(endpoints.database_url)
    stop = stop_on_signals()
    watch_embedded(endpoints, stop)  # a full disk stops them; bring them back when it is not
    if role is Role.PROCESSOR:
        build_processor(
            settings,
            endpoints.database_url,
            endpoints.redis_url,
            connect=endpoints.connect,
            redis_auth=endpoints.redis_auth,
        ).run(stop)
        return
    from plantstream.api.server import run_server  # the web roles

    run_server(settings, endpoints, role=str(role), stop=stop)
