"""Quotas per facility and per key (ThingsBoard's tenant profile as the model): each one refused
with its code and counted, and one facility's flood does not hold back another's readings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from fixtures.api import SERVER_SECRET
from fixtures.pipeline import assert_books_balance, counters, drain
from prometheus_client.parser import text_string_to_metric_families

from plantstream.api import AppState, create_app
from plantstream.api.state import KeyCache, open_pool
from plantstream.model import Reading, TimeWindow, now_us
from plantstream.settings import load_settings
from plantstream.store.keys import Role, create_key
from plantstream.stream import RedisStream, pack_readings
from plantstream.testing import app_in_thread, wait_until

A, B = "plant-a", "plant-b"


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def body(facility: str, devices: list[str], ts: datetime | None = None) -> dict[str, Any]:
    """One temperature reading per device, all at ``ts`` (a few seconds ago by default)."""
    stamp = iso(ts or datetime.now(UTC) - timedelta(seconds=5))
    return {
        "facility": facility,
        "readings": [
            {"device": d, "metric": "temperature", "ts": stamp, "value": 40.0} for d in devices
        ],
    }


def refused(metrics_text: str, quota: str, facility: str) -> float:
    """``plantstream_quota_refused_total{quota, facility}`` in a /metrics answer."""
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if (
                sample.name == "plantstream_quota_refused_total"
                and sample.labels.get("quota") == quota
                and sample.labels.get("facility") == facility
            ):
                return float(sample.value)
    return 0.0


def stream_records(stream: RedisStream) -> int:
    return sum(len(stream.read(s.shard_id, None, 10_000).records) for s in stream.list_shards())


class Quoted:
    """An app with the given quota settings on real PostgreSQL, Redis and a Redis stream."""

    def __init__(self, state: AppState, stream: RedisStream, db: psycopg.Connection) -> None:
        self.state, self.stream, self.db = state, stream, db
        self.app = create_app(state)
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self._before = self.client.get("/metrics").text  # the counters are process-wide

    def key(self, role: str, facility: str | None) -> dict[str, str]:
        key, _ = create_key(
            self.db, server_secret=SERVER_SECRET, role=Role(role), facility=facility
        )
        return {"Authorization": f"Bearer {key}"}

    def refused(self, quota: str, facility: str) -> float:
        """What ``quota`` refused for ``facility`` since this app was made."""
        now = refused(self.client.get("/metrics").text, quota, facility)
        return now - refused(self._before, quota, facility)


@pytest.fixture
def quoted(
    database_url: str, db: psycopg.Connection, redis_url: str
) -> Iterator[Callable[..., Quoted]]:
    """A factory: ``quoted(quota_max_sensors_per_facility=5, ...)`` -> a ``Quoted`` app."""
    with ExitStack() as stack:

        def make(**settings: Any) -> Quoted:
            stream = RedisStream(redis.Redis.from_url(redis_url), "readings", retention_hours=0)
            stream.create(4)
            stack.callback(stream.close)
            state = AppState(
                settings=load_settings(**{"max_batch_readings": 500, **settings}),
                pool=open_pool(database_url, max_size=8),
                redis=redis.Redis.from_url(redis_url),
                stream=stream,
                server_secret=SERVER_SECRET,
                window=TimeWindow(),
                keys=KeyCache(60),
            )
            stack.callback(state.close)
            made = Quoted(state, stream, db)
            stack.enter_context(made.client)
            return made

        yield make


def test_new_sensors_past_a_facilitys_quota_are_refused_per_reading_with_quota_sensors(
    quoted: Callable[..., Quoted],
) -> None:
    app = quoted(quota_max_sensors_per_facility=5)
    writer_a, writer_b = app.key("ingest", A), app.key("ingest", B)
    first = app.client.post(
        "/v1/readings", json=body(A, [f"m{i}" for i in range(8)]), headers=writer_a
    )
    assert first.status_code == 202
    assert first.json()["accepted"] == 5
    assert [r["code"] for r in first.json()["rejected"]] == ["quota_sensors"] * 3
    assert "quota of 5 sensors" in first.json()["rejected"][0]["reason"]

    # the registered sensors keep being accepted; another facility has a quota of its own
    again = app.client.post("/v1/readings", json=body(A, ["m0", "m1", "m9"]), headers=writer_a)
    assert again.json()["accepted"] == 2
    assert again.json()["rejected"] == [
        {"index": 2, "code": "quota_sensors", "reason": again.json()["rejected"][0]["reason"]}
    ]
    other = app.client.post(
        "/v1/readings", json=body(B, [f"m{i}" for i in range(5)]), headers=writer_b
    )
    assert other.json() == {"accepted": 5, "rejected": []}
    assert app.refused("quota_sensors", A) == 4
    assert app.refused("quota_sensors", B) == 0


def test_new_sensors_faster_than_a_facilitys_rate_are_refused_for_now(
    quoted: Callable[..., Quoted],
) -> None:
    app = quoted(quota_new_sensors_per_second=5)  # bursts of 50
    writer = app.key("ingest", A)
    first = app.client.post(
        "/v1/readings", json=body(A, [f"m{i:02d}" for i in range(80)]), headers=writer
    )
    assert first.json()["accepted"] == 50
    assert {r["code"] for r in first.json()["rejected"]} == {"quota_new_sensors_rate"}
    assert len(first.json()["rejected"]) == 30
    # registered sensors are never held back by the pace of new ones
    known = app.client.post(
        "/v1/readings", json=body(A, [f"m{i:02d}" for i in range(50)]), headers=writer
    )
    assert known.json() == {"accepted": 50, "rejected": []}
    assert app.refused("quota_new_sensors_rate", A) == 30


def test_the_processor_holds_the_sensor_quota_for_what_slipped_past_ingest(
    database_url: str,
    db: psycopg.Connection,
    stream: RedisStream,
    make_processor: Callable[..., Any],
) -> None:
    """Records put past ingest (another ingest process's stale view, the gateway path): the
    readings of new sensors beyond the quota are dead letters with the code, never lost."""
    received = now_us()
    ts = received - 5_000_000
    stream.put(
        pack_readings(A, received, [Reading(f"d{i}", "temperature", ts, 40.0) for i in range(7)])
    )
    stream.put(pack_readings(B, received, [Reading("d0", "temperature", ts, 40.0)]))
    processor = make_processor(database_url, stream, None, max_sensors_per_facility=4)
    drain(processor)
    assert db.execute("SELECT count(*) FROM sensors WHERE facility = %s", (A,)).fetchone() == (4,)
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (5,)
    letters = db.execute(
        "SELECT facility, reason_code, count(*) FROM dead_letters GROUP BY 1, 2"
    ).fetchall()
    assert letters == [(A, "quota_sensors", 3)]
    books = counters(db)
    assert books[(A, "rejected:quota_sensors")] == 3
    assert books[(A, "stored")] == 4
    assert_books_balance(db)


def test_a_facility_past_its_readings_rate_gets_429_quota_readings_rate_and_b_does_not(
    quoted: Callable[..., Quoted],
) -> None:
    # 100 readings/s, bursts of 200: the third batch of 80 within a moment is too many
    app = quoted(quota_readings_per_second=100, max_batch_readings=100)
    writer_a, writer_b = app.key("ingest", A), app.key("ingest", B)
    answers = [
        app.client.post(
            "/v1/readings", json=body(A, [f"m{i}" for i in range(80)]), headers=writer_a
        )
        for _ in range(3)
    ]
    assert [a.status_code for a in answers[:2]] == [202, 202]
    assert answers[2].status_code == 429
    assert answers[2].json()["error"]["code"] == "quota_readings_rate"
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert stream_records(app.stream) == 160  # one record per reading: none of the refused
    fits = app.client.post("/v1/readings", json=body(A, ["m0"]), headers=writer_a)
    assert fits.status_code == 202  # what is left of the burst still serves a small batch
    other = app.client.post(
        "/v1/readings", json=body(B, [f"m{i}" for i in range(80)]), headers=writer_b
    )
    assert other.status_code == 202
    assert app.refused("quota_readings_rate", A) == 1
    assert app.refused("quota_readings_rate", B) == 0


def test_a_key_past_its_read_rate_gets_429_quota_read_rate_and_another_key_does_not(
    quoted: Callable[..., Quoted],
) -> None:
    app = quoted(quota_read_requests_per_second=1)  # bursts of two
    reader, other = app.key("read", A), app.key("read", A)
    answers = [app.client.get(f"/v1/latest?facility={A}", headers=reader) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["error"]["code"] == "quota_read_rate"
    assert int(answers[2].headers["Retry-After"]) >= 1
    series = app.client.get(f"/v1/series?facility={A}&device=d&metric=temperature", headers=reader)
    assert series.status_code == 429
    assert app.client.get(f"/v1/latest?facility={A}", headers=other).status_code == 200
    assert app.refused("quota_read_rate", A) == 2


def test_latest_of_a_facility_larger_than_one_answer_is_refused_or_paged(
    quoted: Callable[..., Quoted],
) -> None:
    app = quoted(quota_max_latest_values=3)
    hot = app.state.hot
    ts = now_us() - 1_000_000
    hot.update_latest([(A, f"d{i}", "temperature", ts + i, 40.0 + i, 0) for i in range(5)])
    hot.update_latest([(B, "d0", "temperature", ts, 40.0, 0)])
    reader = app.key("read", A)
    whole = app.client.get(f"/v1/latest?facility={A}", headers=reader)
    assert whole.status_code == 403
    assert whole.json()["error"]["code"] == "quota_result_size"
    assert "cursor=0" in whole.json()["error"]["message"]
    assert app.refused("quota_result_size", A) == 1

    seen: list[tuple[str, float]] = []
    cursor: str | None = "0"
    for _ in range(10):  # a bounded walk: 5 values, pages of about 3
        page = app.client.get(f"/v1/latest?facility={A}&cursor={cursor}", headers=reader).json()
        seen += [(v["device"], v["value"]) for v in page["readings"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(set(seen)) == [(f"d{i}", 40.0 + i) for i in range(5)]
    beyond = app.client.get(f"/v1/latest?facility={A}&cursor={2**64}", headers=reader)
    assert beyond.json()["error"]["code"] == "invalid_request"
    one = app.client.get(f"/v1/latest?facility={A}&device=d4", headers=reader).json()
    assert [(v["device"], v["metric"], v["value"]) for v in one["readings"]] == [
        ("d4", "temperature", 44.0)
    ]
    small = app.client.get(f"/v1/latest?facility={B}", headers=app.key("read", B)).json()
    assert len(small["readings"]) == 1
    assert small["next_cursor"] is None


def test_series_longer_than_one_answer_says_truncated_and_where_to_go_on(
    quoted: Callable[..., Quoted],
    database_url: str,
    stream: RedisStream,
    make_processor: Callable[..., Any],
) -> None:
    app = quoted(quota_max_series_points=10)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    readings = [
        {
            "device": "d0",
            "metric": "temperature",
            "ts": iso(start + timedelta(seconds=i)),
            "value": i,
        }
        for i in range(25)
    ]
    answer = app.client.post(
        "/v1/readings", json={"facility": A, "readings": readings}, headers=app.key("ingest", A)
    )
    assert answer.json()["accepted"] == 25
    drain(make_processor(database_url, app.stream, None))
    reader = app.key("read", A)
    values: list[float] = []
    since = iso(start)
    for _ in range(5):  # 25 points in pages of 10
        page = app.client.get(
            "/v1/series",
            params={
                "facility": A,
                "device": "d0",
                "metric": "temperature",
                "from": since,
                "to": iso(start + timedelta(minutes=1)),
                "step": "raw",
            },
            headers=reader,
        ).json()
        values += [p["value"] for p in page["points"]]
        assert len(page["points"]) <= 10
        if not page["truncated"]:
            assert page["next_from"] is None
            break
        since = page["next_from"]
    assert values == [float(i) for i in range(25)]
    assert app.refused("quota_result_size", A) == 2


def test_metrics_hold_a_bounded_set_of_facility_labels(quoted: Callable[..., Quoted]) -> None:
    """An admin key sending for 30 invented facilities adds at most the bound of labels; the
    rest are counted under facility="_other" (nothing goes uncounted)."""
    app = quoted(metrics_max_facilities=3)
    admin = app.key("admin", None)
    invented = [f"made-up-{i:02d}" for i in range(30)]
    for facility in invented:
        answer = app.client.post("/v1/readings", json=body(facility, ["d0"]), headers=admin)
        assert answer.status_code == 202
    labelled: dict[str, float] = {}
    for family in text_string_to_metric_families(app.client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "plantstream_ingest_readings_total":
                facility = sample.labels["facility"]
                labelled[facility] = labelled.get(facility, 0) + sample.value
    own = [f for f in invented if f in labelled]
    assert len(own) <= 3
    assert labelled["_other"] >= 30 - len(own)


# generous for a busy two-core machine: unflooded it is well under a second; the flood of
# with no quotas a flood held the victim's readings back 24.7 s and 47.3 s
VICTIM_BOUND_S = 10.0


def test_a_flooding_facility_is_refused_while_another_stays_visible_within_a_bound(
    quoted: Callable[..., Quoted],
    database_url: str,
    redis_client: redis.Redis,
    make_processor: Callable[..., Any],
) -> None:
    """A floods past its sensor and rate quotas from four connections; B sends one batch
    at a time and measures, for each, 202 -> visible in /v1/latest."""
    app = quoted(
        quota_max_sensors_per_facility=300,
        quota_readings_per_second=2_000,
        quota_read_requests_per_second=1_000,
        rate_limit_per_key=100_000,
    )
    writer_a, writer_b, reader_b = app.key("ingest", A), app.key("ingest", B), app.key("read", B)
    processor = make_processor(database_url, app.stream, redis_client)  # ingest holds the quotas
    stop = threading.Event()
    running = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    running.start()
    flood: dict[str, int] = {}
    lock = threading.Lock()
    with app_in_thread(app.app) as url:

        def flooder(n: int) -> None:
            with httpx.Client(base_url=url, headers=writer_a, timeout=30) as client:
                for seq in range(400):  # bounded: at most 400 batches of 500 per connection
                    if stop.is_set() or flood.get("done"):
                        return
                    devices = [f"a{n}-{seq}-{i}" for i in range(500)]  # new sensors every time
                    answer = client.post("/v1/readings", json=body(A, devices))
                    if answer.status_code == 202:
                        codes = {r["code"] for r in answer.json()["rejected"]}
                        outcome = "202" + "".join(f":{c}" for c in sorted(codes))
                    else:
                        outcome = f"{answer.status_code}:{answer.json()['error']['code']}"
                    with lock:
                        flood[outcome] = flood.get(outcome, 0) + 1

        flooders = [threading.Thread(target=flooder, args=(n,)) for n in range(4)]
        for thread in flooders:
            thread.start()
        latencies: list[float] = []
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                wait_until(lambda: sum(flood.values()) >= 20, timeout=30, what="the flood")
                for i in range(15):
                    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=60 - i)
                    sent = client.post(
                        "/v1/readings", json=body(B, ["victim"], ts), headers=writer_b
                    )
                    assert sent.status_code == 202, sent.text
                    assert sent.json()["accepted"] == 1
                    answered = time.monotonic()

                    def visible(ts: datetime = ts) -> bool:
                        latest = client.get(
                            f"/v1/latest?facility={B}&device=victim", headers=reader_b
                        ).json()
                        return any(v["ts"] == iso(ts) for v in latest["readings"])

                    wait_until(visible, timeout=60, what=f"B's reading {i} in /v1/latest")
                    latencies.append(time.monotonic() - answered)
        finally:
            flood["done"] = 1
            for thread in flooders:
                thread.join(60)
            metrics_text = httpx.get(url + "/metrics").text
            stop.set()
            running.join(30)
    assert flood.get("429:quota_readings_rate", 0) > 0, flood
    assert any("quota_sensors" in outcome for outcome in flood), flood
    assert {o for o in flood if o != "done"} <= {
        "202",
        "202:quota_sensors",
        "202:quota_new_sensors_rate",
        "202:quota_new_sensors_rate:quota_sensors",
        "429:quota_readings_rate",
        "429:quota_backlog",  # its readings waited unprocessed past the backlog bound
    }, flood
    assert max(latencies) < VICTIM_BOUND_S, latencies
    assert refused(metrics_text, "quota_readings_rate", A) > 0
    assert refused(metrics_text, "quota_sensors", A) > 0
    assert refused(metrics_text, "quota_readings_rate", B) == 0
    sensors = app.db.execute("SELECT count(*) FROM sensors WHERE facility = %s", (A,)).fetchone()
    assert sensors is not None
    assert sensors[0] <= 300
