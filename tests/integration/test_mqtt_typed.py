"""Sparkplug B typed values, history and shared data, through Mosquitto.

Eclipse Tahu's JavaScript client sends strings, booleans and an Int64 beyond 2**53; an
``is_historical`` metric goes to the bridge's history sink; two bridges share the data of
one edge node under ``$share`` and every reading is stored once.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import psycopg
from fixtures.mqtt import QosEdgeNode, stream_readings
from paho.mqtt.enums import CallbackAPIVersion
from psycopg_pool import ConnectionPool

from plantstream.errors import StorageError
from plantstream.history import HistoryStore
from plantstream.model import (
    DEFAULT_SIGNALS,
    FixedCatalog,
    ParsedBatch,
    SignalDef,
    SignalKind,
    TimeWindow,
    ValueType,
    to_epoch_us,
)
from plantstream.mqtt.history import StoreHistory
from plantstream.mqtt.sparkplug import edge
from plantstream.mqtt.sparkplug.sparkplug_b_pb2 import Payload
from plantstream.store.keys import Principal
from plantstream.testing import readings_count, wait_until

TYPED = FixedCatalog(
    {
        **DEFAULT_SIGNALS,
        "mode": SignalDef("mode", ValueType.STATE, SignalKind.STATE, states=("auto", "manual")),
        "running": SignalDef("running", ValueType.BOOL),
        "energy": SignalDef("energy", ValueType.INT64, SignalKind.COUNTER, unit="Wh"),
    }
)


def test_strings_booleans_and_int64_beyond_2_53_from_a_tahu_edge_node(
    mosquitto_url, start_bridge, tahu_edge_node, redis_url, facility
):
    start_bridge(mosquitto_url, catalog=TYPED)
    node = tahu_edge_node(mosquitto_url, facility, "edge1", "dev1")
    wait_until(lambda: node.count("birth") >= 1, timeout=30, what="the Tahu births")

    def typed() -> dict[str, list[object]]:
        got: dict[str, list[object]] = {}
        for _, _, metric, _ts, value in sorted(stream_readings(redis_url), key=lambda r: r[3]):
            if metric in {"mode", "running", "energy"}:
                got.setdefault(metric, []).append(value)
        return got

    wait_until(lambda: len(typed()) == 3, timeout=20, what="the birth's typed values")
    node.send("typed")
    wait_until(lambda: len(typed().get("mode", [])) == 2, timeout=20, what="typed DDATA")
    got = typed()  # by timestamp: the Tahu node's data clock runs a minute behind its births
    assert got["mode"] == ["manual", "auto"]
    assert got["running"] == [False, True]
    assert got["energy"] == [-(2**60 + 3), 2**53 + 1]
    assert all(type(v) is int for v in got["energy"])  # exact, never through a float


class RecordingHistory:
    """A ``HistorySink`` that keeps what it was given (the history writer's contract)."""

    def __init__(self) -> None:
        self.window = TimeWindow(max_past_us=400 * 86_400 * 1_000_000)
        self.batches: list[ParsedBatch] = []
        self.lock = threading.Lock()

    def write_history(self, who: Principal, batch: ParsedBatch, *, received_us: int) -> None:
        with self.lock:
            self.batches.append(batch)

    def readings(self) -> list[tuple[str, int, float]]:
        with self.lock:
            return [(r.metric, r.ts_us, r.value) for b in self.batches for r in b.readings]


def _publisher(url: str) -> mqtt.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:8]}"
    )
    client.connect(host, int(port))
    client.loop_start()
    return client


def _publish_live_and_historical(mosquitto_url: str, facility: str) -> tuple[int, int]:
    """A birth, then one DDATA with a live reading and an ``is_historical`` one a month old;
    returns (now, a month ago) in milliseconds."""
    now_ms = int(time.time() * 1000)
    month_ago = now_ms - 30 * 86_400_000
    client = _publisher(mosquitto_url)
    try:
        base = f"spBv1.0/{facility}"
        births = [
            (f"{base}/NBIRTH/e1", edge.node_birth(bdseq=0, timestamp_ms=now_ms, metrics={})),
            (
                f"{base}/DBIRTH/e1/d1",
                edge.device_birth(seq=1, timestamp_ms=now_ms, metrics={"temperature": (1, 20.0)}),
            ),
        ]
        for topic, payload in births:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
        p = Payload(timestamp=now_ms, seq=2)
        p.metrics.add(alias=1, double_value=21.0, timestamp=now_ms)
        p.metrics.add(alias=1, double_value=5.0, timestamp=month_ago, is_historical=True)
        client.publish(f"{base}/DDATA/e1/d1", p.SerializeToString(), qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return now_ms, month_ago


def test_is_historical_metrics_go_to_the_history_sink_not_the_stream(
    mosquitto_url, start_bridge, redis_url, facility
):
    history = RecordingHistory()
    start_bridge(mosquitto_url, history=history)
    now_ms, month_ago = _publish_live_and_historical(mosquitto_url, facility)
    wait_until(history.readings, timeout=20, what="the historical reading")
    assert history.readings() == [("temperature", month_ago * 1000, 5.0)]
    wait_until(lambda: len(stream_readings(redis_url)) >= 2, timeout=20, what="live readings")
    live = sorted((ts, v) for *_, ts, v in stream_readings(redis_url))
    assert live == [(now_ms * 1000, 20.0), (now_ms * 1000, 21.0)]  # the old one is not live


def test_serve_mqtt_s_history_sink_stores_a_month_old_reading_in_postgres(
    mosquitto_url, start_bridge, redis_url, facility, database_url
):
    """What ``serve mqtt`` plugs in: the history path, committed before the message's ack."""
    pool = ConnectionPool(database_url, min_size=1, max_size=2, open=True)
    store = HistoryStore(catalog=FixedCatalog(DEFAULT_SIGNALS), retention_days=400)
    history = StoreHistory(pool, store, retention_days=400, window=TimeWindow())
    try:
        start_bridge(mosquitto_url, history=history)
        _, month_ago = _publish_live_and_historical(mosquitto_url, facility)
        with psycopg.connect(database_url, autocommit=True) as conn:
            wait_until(lambda: readings_count(conn) == 1, timeout=20, what="history stored")
            row = conn.execute("SELECT ts, value FROM readings").fetchone()
            assert row is not None
            assert (to_epoch_us(row[0]), row[1]) == (month_ago * 1000, 5.0)
        live = sorted((ts, v) for *_, ts, v in stream_readings(redis_url))
        assert (month_ago * 1000, 5.0) not in live
    finally:
        pool.close()


def test_two_bridges_share_one_nodes_data_and_store_each_reading_once(
    mosquitto_url, start_bridge, redis_url, facility
):
    shared = {"sparkplug_shared": True, "mqtt_share_group": facility, "mqtt_plain_topics": False}
    bridges = [start_bridge(mosquitto_url, **shared) for _ in range(2)]
    node = QosEdgeNode(mosquitto_url, group=facility, edge="e1", device="d1", metrics=5)
    try:
        now_ms = int(time.time() * 1000)
        node.birth(now_ms)
        messages = 400
        for i in range(messages):
            node.data(now_ms + 1 + i)
        wait_until(lambda: node.acked == messages + 2, timeout=30, what="the broker's acks")
        wanted = 5 * (messages + 1)  # the birth's values and each DDATA's five
        wait_until(
            lambda: len({(r[1], r[2], r[3]) for r in stream_readings(redis_url)}) == wanted,
            timeout=60,
            what="every reading",
        )
    finally:
        node.close()
    got = stream_readings(redis_url)
    assert len({(d, m, ts) for _, d, m, ts, _ in got}) == wanted
    data = [b.bridge.taken["sparkplug"] for b in bridges]
    # both took births and deaths; the data was split between them, none of it twice
    assert sum(data) == 2 * 2 + messages
    assert min(data) > 2 + messages // 10
    assert all(b.host.stale() == 0 for b in bridges)


def test_plain_one_value_topics_carry_typed_values(
    mosquitto_url, start_bridge, redis_url, facility
):
    running = start_bridge(mosquitto_url, catalog=TYPED)
    ts = datetime.now(UTC).isoformat()
    base = f"plantstream/v1/{facility}/press-1"
    for signal, message in (
        ("running", "true"),
        ("energy", str(2**53 + 1)),
        ("mode", json.dumps({"value": "manual", "ts": ts})),
        ("mode", '"turbo"'),  # not a state of mode: refused, not stored
    ):
        subprocess.run(
            [
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                "-q",
                "1",
                "-t",
                f"{base}/{signal}",
                "-m",
                message,
            ],
            check=True,
            timeout=30,
        )
    books = running.bridge.readings
    wait_until(lambda: books["accepted"] + books["rejected"] == 4, timeout=20, what="4 values")
    assert books["rejected"] == 1
    got = sorted((m, v) for _, _, m, _, v in stream_readings(redis_url))
    assert got == [("energy", 2**53 + 1), ("mode", "manual"), ("running", True)]
    assert type(got[0][1]) is int


class BusyHistory(RecordingHistory):
    """A history writer that is busy twice (a facility's history lock, PostgreSQL away)."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 2

    def write_history(self, who: Principal, batch: ParsedBatch, *, received_us: int) -> None:
        with self.lock:
            if self.refusals:
                self.refusals -= 1
                raise StorageError("history not stored yet")
        super().write_history(who, batch, received_us=received_us)


def test_a_busy_history_writer_delays_the_batch_without_putting_its_live_readings_twice(
    mosquitto_url, start_bridge, redis_url, facility
):
    history = BusyHistory()
    start_bridge(mosquitto_url, history=history)
    now_ms, month_ago = _publish_live_and_historical(mosquitto_url, facility)
    wait_until(history.readings, timeout=30, what="the historical reading, after two retries")
    assert history.readings() == [("temperature", month_ago * 1000, 5.0)]
    wait_until(lambda: len(stream_readings(redis_url)) >= 2, timeout=20, what="live readings")
    live = sorted((ts, v) for *_, ts, v in stream_readings(redis_url))
    assert live == [(now_ms * 1000, 20.0), (now_ms * 1000, 21.0)]  # each put once
