"""Each facility's declared signals on the paths that validate raw input themselves: MQTT plain
topics and Sparkplug B (on real PostgreSQL); and the store catalog's own bounds and refreshes."""

from __future__ import annotations

import time

import psycopg
import redis

from plantstream.api.state import open_pool
from plantstream.errors import ErrorCode
from plantstream.ingest import InflightGate, IngestService, RateLimiter
from plantstream.model import ParsedBatch, TimeWindow, now_us
from plantstream.model.plantfile import parse_model
from plantstream.model.signals import UnknownSignalPolicy
from plantstream.mqtt.plain import PlainTopics
from plantstream.mqtt.sparkplug import edge
from plantstream.mqtt.sparkplug.host import SparkplugHost
from plantstream.mqtt.sparkplug.mapping import NameRule
from plantstream.store import assets, signal_defs
from plantstream.store.catalog import StoreCatalog
from plantstream.store.keys import Principal, Role
from plantstream.stream import RedisStream
from plantstream.testing import wait_until

MODEL = b"""\
facility: f1
signals:
  - {name: line_voltage, unit: kV, accepted_units: [V], range: [0, 1000]}
  - {name: mode, type: state, states: [auto, manual]}
"""


class _NoBirths:
    def load(self, key: str) -> None:
        return None

    def devices(self, facility: str, node: str) -> list[str]:
        return []


def _apply(conn: psycopg.Connection, text: bytes) -> None:
    assets.apply_model(conn=conn, model=parse_model(text, source="model").model)


def test_mqtt_plain_topics_and_sparkplug_take_the_declared_signals(
    database_url: str, db: psycopg.Connection
) -> None:
    now_ms = int(time.time() * 1000)
    now_us = now_ms * 1000
    with open_pool(database_url, max_size=2) as pool:
        catalog = StoreCatalog(pool)
        plain = PlainTopics(window=TimeWindow(), max_readings=100, catalog=catalog)
        topic = "plantstream/v1/f1/m1/line_voltage"
        before = plain.handle(topic, b'{"value": 400, "unit": "V"}', now_us)
        assert before.rejected == {ErrorCode.UNKNOWN_METRIC: 1}
        _apply(db, MODEL)
        catalog.invalidate("f1")
        one = plain.handle(topic, b'{"value": 400, "unit": "V"}', now_us)
        assert [(r.metric, r.value) for r in one.readings] == [("line_voltage", 0.4)]
        batch = plain.handle(
            "plantstream/v1/f1/m1",
            b'{"facility": "f1", "readings": [{"device": "m1", "metric": "mode", '
            b'"ts": "2020-01-01T00:00:00Z", "value": "auto"}, {"device": "m1", '
            b'"metric": "mode", "ts": "%s", "value": "auto"}]}'
            % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()).encode(),
            now_us,
        )
        assert [(r.metric, r.value) for r in batch.readings] == [("mode", "auto")]
        assert batch.rejected == {ErrorCode.TIMESTAMP_TOO_OLD: 1}

        host = SparkplugHost(
            rule=NameRule(), window=TimeWindow(), store=_NoBirths(), catalog=catalog
        )
        host.handle(
            "spBv1.0/f1/NBIRTH/e1",
            edge.node_birth(bdseq=1, timestamp_ms=now_ms, metrics={}),
            now_us,
        )
        birth = edge.device_birth(
            seq=1,
            timestamp_ms=now_ms,
            metrics={"line_voltage": (1, 0.0)},
            units={"line_voltage": "V"},
        )
        host.handle("spBv1.0/f1/DBIRTH/e1/d1", birth, now_us)
        data = edge.data(
            seq=2, timestamp_ms=now_ms, values=[(1, 231.0, now_ms), (1, 9e9, now_ms + 1)]
        )
        out = host.handle("spBv1.0/f1/DDATA/e1/d1", data, now_us)
        assert [(r.metric, round(r.value, 6)) for r in out.readings] == [("line_voltage", 0.231)]
        assert dict(out.rejected) == {ErrorCode.VALUE_OUT_OF_RANGE: 1}  # its declared range
        catalog.close()


def test_the_catalog_cache_is_bounded_and_refreshes_off_the_caller(
    database_url: str, db: psycopg.Connection
) -> None:
    for n in range(3):
        signals = "".join(f"  - {{name: s{i}}}\n" for i in range(10))
        _apply(db, f"facility: f{n}\nsignals:\n{signals}".encode())
    now = [0.0]
    with open_pool(database_url, max_size=2) as pool:
        bounded = StoreCatalog(pool, max_signals=25, clock=lambda: now[0])
        for n in range(3):
            assert bounded.get(f"f{n}", "s1") is not None
        assert len(bounded) == 2  # 30 definitions do not fit in 25: the oldest facility went
        assert set(bounded._entries) == {"f1", "f2"}

        background = StoreCatalog(pool, ttl=1.0, background=True, clock=lambda: now[0])
        assert background.get("f0", "s1") is not None  # a first lookup waits for PostgreSQL
        assert background.policy("f0") is UnknownSignalPolicy.REFUSE
        _apply(db, b"facility: f0\nunknown_signals: register\nsignals: [{name: s1}]\n")
        now[0] = 2.0  # expired: the caller gets what it had, the refresh runs on a thread
        assert background.policy("f0") is UnknownSignalPolicy.REFUSE
        wait_until(
            lambda: background.policy("f0") is UnknownSignalPolicy.REGISTER,
            timeout=10,
            what="the refresh",
        )
        assert background.get("f0", "s2") is None  # removed from the model
        view = background.batch()
        assert view.get("f0", "s1") is not None
        assert view.get("f0", "s9") is None
        assert view.new_unknown() == ["s9"]
        # a sender's view never reads (nor caches) a facility it may not send for
        own = background.batch(allowed=lambda facility: facility == "f0")
        assert own.get("f1", "s1") is None  # f1 declares s1, but this key gets its 403
        assert own.get("f1", "temperature") is not None  # the defaults still answer
        assert "f1" not in background._entries
        background.close()


def test_readings_an_adapter_decoded_register_their_unknown_signals_too(
    database_url: str, redis_url: str, db: psycopg.Connection
) -> None:
    _apply(db, b"facility: f1\nunknown_signals: register\n")
    stream = RedisStream(redis.Redis.from_url(redis_url), "catalog-test", retention_hours=0)
    stream.create(1)
    with open_pool(database_url, max_size=2) as pool:
        catalog = StoreCatalog(pool)
        ingest = IngestService(
            stream=stream,
            window=TimeWindow(),
            max_readings=100,
            limiter=RateLimiter(1000.0),
            gate=InflightGate(4),
            catalog=catalog,
        )
        received = now_us()
        plain = PlainTopics(window=TimeWindow(), max_readings=100, catalog=catalog)
        out = plain.handle("plantstream/v1/f1/m1/coolant_flow", b"3.5", received)
        assert [r.metric for r in out.readings] == ["coolant_flow"]  # taken under register
        who = Principal("0123456789abcdef", Role.INGEST, "f1")
        answer = ingest.accept_decoded(
            who, ParsedBatch("f1", out.readings, []), received_us=received
        )
        assert answer.accepted == 1
        assert signal_defs.unclassified(conn=db, facility="f1") == ["coolant_flow"]
        catalog.close()
    stream.close()


def test_register_many_fills_the_room_left_and_refuses_the_rest(db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO signal_defs (facility, name, value_type, kind, unclassified) "
        "SELECT 'f', 'x' || i, 'double', 'gauge', true FROM generate_series(1, %s) i",
        (signal_defs.MAX_UNCLASSIFIED - 2,),
    )
    refused = signal_defs.register_many(conn=db, facility="f", names=["c", "x1", "a", "b", "a"])
    assert refused == {"c"}  # x1 was in already; a and b fill the room, in name order
    assert len(signal_defs.unclassified(conn=db, facility="f")) == signal_defs.MAX_UNCLASSIFIED
    assert signal_defs.register_many(conn=db, facility="f", names=["x2"]) == set()
