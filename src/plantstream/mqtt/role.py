"""``plantstream serve mqtt``: the MQTT / Sparkplug B bridge into the stream, until SIGTERM.

Built from ``Settings`` on the runtime it is given (the stream, Redis, the time window); the
broker is ``PLANTSTREAM_MQTT_URL``, or the embedded one under the data directory when unset.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

import redis
from prometheus_client import start_http_server

from plantstream.ingest import InflightGate, IngestService, RateLimiter
from plantstream.local.mqtt_broker import EmbeddedBroker
from plantstream.model import TimeWindow
from plantstream.model.signals import DEFAULT_CATALOG, SignalCatalog
from plantstream.mqtt import metrics
from plantstream.mqtt.bridge import Bridge, Route
from plantstream.mqtt.client import parse_url
from plantstream.mqtt.history import HistorySink, store_history
from plantstream.mqtt.plain import PREFIX, PlainTopics
from plantstream.mqtt.session import BrokerSession
from plantstream.mqtt.sparkplug.host import SparkplugHost
from plantstream.mqtt.sparkplug.mapping import NameRule
from plantstream.settings import Settings
from plantstream.store.sparkplug_state import RedisBirthStore
from plantstream.stream.base import Stream

log = logging.getLogger(__name__)


class BridgeRuntime(Protocol):
    """What the bridge needs of ``plantstream.runtime.Runtime``."""

    @property
    def settings(self) -> Settings: ...

    @property
    def window(self) -> TimeWindow: ...

    def redis(self, purpose: str) -> redis.Redis: ...

    def stream(self) -> Stream: ...


def facilities_of(settings: Settings) -> frozenset[str]:
    return frozenset(f for f in settings.mqtt_facilities.split(",") if f)


def build_bridge(
    runtime: BridgeRuntime,
    session: BrokerSession,
    *,
    catalog: SignalCatalog = DEFAULT_CATALOG,
    history: HistorySink | None = None,
) -> tuple[Bridge, SparkplugHost]:
    """The bridge and its Sparkplug host, wired to ``session`` for acks and rebirths.

    ``catalog`` is the facilities' signal catalog (types, units, ranges); ``history`` takes
    ``is_historical`` readings (None: they go on the live path, in the live window).
    """
    s = runtime.settings
    redis_client = runtime.redis("state")
    facilities = facilities_of(s)
    if catalog is DEFAULT_CATALOG:  # the runtime's store-backed catalog, when it has one
        catalog = getattr(runtime, "signal_catalog", DEFAULT_CATALOG)
    ingest = IngestService(
        stream=runtime.stream(),
        window=runtime.window,
        max_readings=s.max_batch_readings,
        limiter=RateLimiter(s.rate_limit_per_key),
        gate=InflightGate(s.max_inflight_ingest),
        catalog=catalog,  # records the unknown signals a register policy lets in
    )
    host = SparkplugHost(
        rule=NameRule(s.sparkplug_facility, s.sparkplug_machine, s.sparkplug_node_machine),
        window=runtime.window,
        store=RedisBirthStore(redis_client),
        facilities=facilities,
        rebirth_interval=s.sparkplug_rebirth_interval_seconds,
        catalog=catalog,
        history_window=history.window if history is not None else None,
        check_seq=not s.sparkplug_shared,
    )
    plain = PlainTopics(
        window=runtime.window,
        max_readings=s.max_batch_readings,
        facilities=facilities,
        catalog=catalog,
    )
    routes = [Route(PREFIX, "plain", plain.handle), Route("spBv1.0/", "sparkplug", host.handle)]
    bridge = Bridge(
        ingest=ingest,
        redis_client=redis_client,
        routes=routes,
        ack=session.ack,
        rebirth=session.request_rebirth,
        client_id=s.mqtt_client_id,
        batch_messages=s.mqtt_batch_messages,
        batch_wait_s=s.mqtt_batch_wait_ms / 1000,
        dead_letter_max=s.mqtt_dead_letter_max,
        on_batch=lambda: metrics.STALE_NODES.set(host.stale()),
        ready=host.ready,
        history=history,
    )
    return bridge, host


def open_session(settings: Settings) -> BrokerSession:
    """A session on the configured broker, or on the embedded one (started if needed)."""
    if settings.mqtt_url:
        return BrokerSession(settings, parse_url(settings.mqtt_url))
    # a login per facility the bridge serves: its password is in <data dir>/mqtt/<facility>.password
    broker = EmbeddedBroker(
        settings.data_dir / "mqtt", facilities=tuple(sorted(facilities_of(settings)))
    )
    url = broker.start()
    username, password = broker.bridge_credentials()
    # amqtt speaks MQTT 3.1.1 only: a persistent session there is clean session off
    embedded = settings.model_copy(update={"mqtt_protocol": "3.1.1"})
    session = BrokerSession(embedded, parse_url(url), username=username, password=password)
    session.embedded = broker  # left running when the bridge stops, like the embedded Redis
    return session


def run(runtime: BridgeRuntime, stop: threading.Event) -> None:
    """Bridge until ``stop``; then finish the batch in hand, say the host is offline, leave."""
    settings = runtime.settings
    if settings.mqtt_metrics_port:
        # Prometheus scrapes it from outside the task: counters only, no readings, no secrets
        start_http_server(settings.mqtt_metrics_port, addr="0.0.0.0")  # noqa: S104
    session = open_session(settings)
    history = store_history(runtime, runtime.window)  # is_historical readings: PostgreSQL
    bridge, _ = build_bridge(runtime, session, history=history)
    session.start(bridge)
    log.info("MQTT bridge on %s:%s", session.address.host, session.address.port)
    try:
        bridge.run(stop)
    finally:
        session.close()
        if history is not None:
            history.pool.close()
