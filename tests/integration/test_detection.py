"""Detection through the real processor: one alert per fault, surviving restarts, shard moves
and a lost Redis; dropouts; the alert feed; the signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import psycopg
import pytest
import redis
from fixtures.pipeline import drain

from plantstream.detect import DetectionConfig, DetectionEngine, Rule
from plantstream.detect.config import save_config
from plantstream.detect.webhook import WebhookNotifier
from plantstream.model import Reading, now_us
from plantstream.processor import Processor
from plantstream.store.alerts import feed_key
from plantstream.store.detection_state import missing_key, state_key
from plantstream.stream import RedisStream, pack_readings

MakeProcessor = Callable[..., Processor]
SECOND = 1_000_000


def oven(
    start_us: int,
    seconds: int,
    *,
    ramp_from: int | None = None,
    ramp_to: int | None = None,
    seed: int = 1,
    metrics: tuple[str, ...] = ("temperature", "power"),
    silent: tuple[int, int] | None = None,
) -> list[Reading]:
    """An oven at 1 Hz: temperature 220 +- 0.8 (ramping +0.5 degC/s inside the ramp window)."""
    rng = random.Random(seed)
    readings = []
    for s in range(seconds):
        ts = start_us + s * SECOND
        temperature = 220 + rng.gauss(0, 0.8)
        if ramp_from is not None and ramp_to is not None and ramp_from <= s < ramp_to:
            temperature += 0.5 * (s - ramp_from)
        if "temperature" in metrics and not (silent and silent[0] <= s < silent[1]):
            readings.append(Reading("oven-1", "temperature", ts, temperature, 0))
        if "power" in metrics:
            readings.append(Reading("oven-1", "power", ts, 85 + rng.gauss(0, 1.5), 0))
    return readings


def send(stream: RedisStream, readings: list[Reading], *, chunk: int = 5) -> None:
    """As a gateway posting every ``chunk`` seconds; received when posted."""
    by_second: dict[int, list[Reading]] = {}
    for r in readings:
        by_second.setdefault(r.ts_us // (chunk * SECOND), []).append(r)
    for key in sorted(by_second):
        group = by_second[key]
        stream.put(pack_readings("plant-01", max(r.ts_us for r in group) + SECOND, group))


def alerts_of(db: psycopg.Connection) -> list[tuple[str, str, str]]:
    rows = db.execute(
        "SELECT detector, metric, state, opened_at, resolved_at, message FROM alerts ORDER BY id"
    ).fetchall()
    return [row[:3] for row in rows]


@pytest.fixture
def engine_factory(
    database_url: str, redis_client: redis.Redis
) -> Iterator[Callable[..., DetectionEngine]]:
    made: list[DetectionEngine] = []

    def make(**options: object) -> DetectionEngine:
        engine = DetectionEngine(database_url=database_url, redis_client=redis_client, **options)  # type: ignore[arg-type]
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


def test_one_long_fault_gives_one_alert_that_resolves(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
    engine_factory: Callable[..., DetectionEngine],
) -> None:
    start = now_us() - 3600 * SECOND
    # 10 minutes normal, 10 minutes overheating (capped at +60 degC), 3 minutes normal again
    readings = oven(start, 23 * 60, ramp_from=600, ramp_to=1200)
    send(stream, readings)
    drain(make_processor(database_url, stream, redis_client, hooks=[engine_factory()]))
    assert alerts_of(db) == [("overheating", "temperature", "resolved")]
    opened, resolved = db.execute(
        "SELECT extract(epoch FROM opened_at) * 1e6, extract(epoch FROM resolved_at) * 1e6 "
        "FROM alerts"
    ).fetchone()
    assert 0 <= float(opened) - (start + 600 * SECOND) <= 60 * SECOND
    assert float(resolved) >= start + 1200 * SECOND
    feed = [json.loads(fields[b"e"]) for _, fields in redis_client.xrange(feed_key("plant-01"))]
    assert [(e["event"], e["kind"]) for e in feed] == [
        ("opened", "overheating"),
        ("resolved", "overheating"),
    ]


def test_alert_state_survives_restart_shard_move_and_lost_redis(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
    engine_factory: Callable[..., DetectionEngine],
) -> None:
    start = now_us() - 3600 * SECOND
    readings = oven(start, 30 * 60, ramp_from=600, ramp_to=1800)
    first, second, third = readings[:1500], readings[1500:2500], readings[2500:]
    send(stream, first)
    a = make_processor(database_url, stream, redis_client, owner="a", hooks=[engine_factory()])
    drain(a)
    a.shutdown()
    assert alerts_of(db) == [("overheating", "temperature", "open")]

    # another processor (another engine) takes the shards over: the fault is still one alert
    send(stream, second)
    b = make_processor(database_url, stream, redis_client, owner="b", hooks=[engine_factory()])
    drain(b)
    b.shutdown()
    assert alerts_of(db) == [("overheating", "temperature", "open")]

    # Redis loses the detector state: it is rebuilt from PostgreSQL, still one alert
    assert redis_client.delete(state_key("plant-01")) == 1
    send(stream, third)
    c = make_processor(database_url, stream, redis_client, owner="c", hooks=[engine_factory()])
    drain(c)
    assert alerts_of(db) == [("overheating", "temperature", "open")]
    last_seen = db.execute("SELECT extract(epoch FROM last_seen_at) * 1e6 FROM alerts").fetchone()
    assert float(last_seen[0]) > start + 25 * 60 * SECOND


def test_a_silent_metric_is_a_dropout_until_it_returns(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
    engine_factory: Callable[..., DetectionEngine],
) -> None:
    start = now_us() - 3600 * SECOND
    send(stream, oven(start, 15 * 60, silent=(600, 780)))
    drain(make_processor(database_url, stream, redis_client, hooks=[engine_factory()]))
    rows = db.execute(
        "SELECT detector, metric, state, extract(epoch FROM opened_at) * 1e6 FROM alerts"
    ).fetchall()
    assert [(k, m, s) for k, m, s, _ in rows] == [("dropout", "temperature", "resolved")]
    delay = (float(rows[0][3]) - (start + 600 * SECOND)) / SECOND
    assert 25 <= delay <= 45


def test_a_dropout_open_when_redis_lost_its_state_ends_when_the_metric_returns(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
    engine_factory: Callable[..., DetectionEngine],
) -> None:
    """Also the upgrade path: state kept under earlier key names is not read, but rebuilt."""
    start = now_us() - 3600 * SECOND
    readings = oven(start, 15 * 60, silent=(600, 780))
    before, during, after = (
        [r for r in readings if r.ts_us < start + 600 * SECOND],
        [r for r in readings if start + 600 * SECOND <= r.ts_us < start + 780 * SECOND],
        [r for r in readings if r.ts_us >= start + 780 * SECOND],
    )
    first = make_processor(database_url, stream, redis_client, owner="a", hooks=[engine_factory()])
    send(stream, before)
    drain(first)
    send(stream, during)  # power only: the oven's own clock says temperature is overdue
    drain(first)
    first.shutdown()
    assert alerts_of(db) == [("dropout", "temperature", "open")]

    assert redis_client.delete(state_key("plant-01"), missing_key("plant-01")) == 2
    send(stream, after)
    drain(make_processor(database_url, stream, redis_client, owner="b", hooks=[engine_factory()]))
    assert alerts_of(db) == [("dropout", "temperature", "resolved")]
    resolved = db.execute("SELECT extract(epoch FROM resolved_at) * 1e6 FROM alerts").fetchone()
    assert float(resolved[0]) == pytest.approx(start + 780 * SECOND, abs=SECOND)


def test_new_settings_apply_once_the_engine_refreshes_them(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
    engine_factory: Callable[..., DetectionEngine],
) -> None:
    start = now_us() - 3600 * SECOND
    readings = oven(start, 9 * 60)
    engine = engine_factory(config_refresh_s=3600)
    processor = make_processor(database_url, stream, redis_client, hooks=[engine])
    send(stream, readings[: 2 * 180])
    drain(processor)
    assert alerts_of(db) == []

    ceiling = DetectionConfig(rules=[Rule(device="oven-*", metric="temperature", high=200.0)])
    assert save_config(db, ceiling, author="test") == 1
    send(stream, readings[2 * 180 : 2 * 360])
    drain(processor)
    assert alerts_of(db) == []  # the settings read at start hold for ``config_refresh_s``

    assert engine.refresh_config(force=True) == ceiling
    assert engine.version == 1
    send(stream, readings[2 * 360 :])
    drain(processor)
    assert alerts_of(db) == [("overheating", "temperature", "open")]
    assert "above limit 200" in db.execute("SELECT message FROM alerts").fetchone()[0]


def test_a_whole_device_gone_quiet_in_live_data_is_swept_into_dropouts(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
    engine_factory: Callable[..., DetectionEngine],
) -> None:
    """oven-1 stops 400 s before the facility's newest reading (oven-2 goes on): its metrics
    are dropouts, flagged for whichever processor owns them, and over when it reports again."""
    rng = random.Random(3)
    now = now_us() - 5 * SECOND

    def machine(device: str, first_s: int, last_s: int) -> list[Reading]:
        return [
            Reading(device, metric, now + s * SECOND, level + rng.gauss(0, 0.5), 0)
            for s in range(first_s, last_s)
            for metric, level in (("temperature", 220.0), ("power", 85.0))
        ]

    send(stream, sorted(machine("oven-1", -800, -400) + machine("oven-2", -800, 1), key=_ts))
    processor = make_processor(database_url, stream, redis_client, hooks=[engine_factory()])
    drain(processor)
    rows = db.execute(
        "SELECT device, metric, detector, state FROM alerts ORDER BY metric"
    ).fetchall()
    assert rows == [
        ("oven-1", "power", "dropout", "open"),
        ("oven-1", "temperature", "dropout", "open"),
    ]
    assert set(redis_client.hkeys(missing_key("plant-01"))) == {
        b"oven-1\x1fpower",
        b"oven-1\x1ftemperature",
    }

    send(stream, machine("oven-1", -3, 1))
    drain(processor)
    assert sorted(alerts_of(db)) == [
        ("dropout", "power", "resolved"),
        ("dropout", "temperature", "resolved"),
    ]
    assert redis_client.hlen(missing_key("plant-01")) == 0


def _ts(reading: Reading) -> int:
    return reading.ts_us


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Receiver.fail_first > 0:
            _Receiver.fail_first -= 1
            self.send_response(503)
        else:
            _Receiver.received.append((dict(self.headers), body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhook_gets_signed_events_and_retries(
    database_url: str,
    stream: RedisStream,
    redis_client: redis.Redis,
    make_processor: MakeProcessor,
    engine_factory: Callable[..., DetectionEngine],
) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.received, _Receiver.fail_first = [], 2
    notifier = WebhookNotifier(
        f"http://127.0.0.1:{server.server_port}/hook", b"s3cret", sleep=lambda _: None
    )
    try:
        start = now_us() - 3600 * SECOND
        send(stream, oven(start, 15 * 60, ramp_from=600, ramp_to=900))
        engine = engine_factory(notify=notifier.notify)
        drain(make_processor(database_url, stream, redis_client, hooks=[engine]))
        notifier.close(timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert [json.loads(body)["event"] for _, body in _Receiver.received] == ["opened"]
    headers, body = _Receiver.received[0]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Plantstream-Signature"] == expected
    assert json.loads(body)["kind"] == "overheating"
