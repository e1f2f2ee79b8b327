"""Plain JSON topics through a real broker: mosquitto_pub -> Mosquitto -> bridge -> stream."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import redis
from fixtures.mqtt import stream_readings

from plantstream.store.sparkplug_state import dead_letters
from plantstream.testing import wait_until


def _pub(topic: str, message: str, *, port: int = 1883, **login: str) -> None:
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic]
    if login:
        args += ["-u", login["username"], "-P", login["password"], "-V", "mqttv311"]
    subprocess.run([*args, "-m", message], check=True, timeout=30)


def _ts(seconds_ago: float = 1.0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def test_a_batch_and_single_values_reach_the_stream(
    mosquitto_url, start_bridge, redis_url, facility
):
    start_bridge(mosquitto_url)
    body = {
        "facility": facility,
        "readings": [
            {"device": "press-1", "metric": "temperature", "ts": _ts(2), "value": 71.5},
            {"device": "press-1", "metric": "pressure", "ts": _ts(2), "value": 3.5, "unit": "bar"},
            {"device": "press-9", "metric": "pressure", "ts": _ts(2), "value": 2.0},
            {"device": "press-1", "metric": "no_such_metric", "ts": _ts(2), "value": 1.0},
        ],
    }
    _pub(f"plantstream/v1/{facility}/press-1", json.dumps(body))
    _pub(f"plantstream/v1/{facility}/press-1/humidity", "42.5")
    _pub(
        f"plantstream/v1/{facility}/press-1/temperature",
        json.dumps({"value": 212.0, "unit": "degF", "ts": _ts(1)}),
    )
    wait_until(lambda: len(stream_readings(redis_url)) >= 4, timeout=20, what="the bridge")
    got = sorted((d, m, round(v, 6)) for f, d, m, _, v in stream_readings(redis_url))
    assert got == [
        ("press-1", "humidity", 42.5),
        ("press-1", "pressure", 3.5),
        ("press-1", "temperature", 71.5),
        ("press-1", "temperature", 100.0),  # converted from degF
    ]  # press-9 (not the topic's device) and the unknown metric were refused per reading


def test_bad_messages_are_dead_lettered_with_their_topic(
    mosquitto_url, start_bridge, redis_url, facility
):
    start_bridge(mosquitto_url)
    _pub(f"plantstream/v1/{facility}/press-1", "{not json")
    other = {
        "facility": "someone-else",
        "readings": [{"device": "press-1", "metric": "temperature", "ts": _ts(), "value": 1.0}],
    }
    _pub(f"plantstream/v1/{facility}/press-1", json.dumps(other))
    _pub(f"plantstream/v1/{facility}/press-1/humidity", "[1, 2]")
    client = redis.Redis.from_url(redis_url)
    wait_until(lambda: len(dead_letters(client=client)) >= 3, timeout=20, what="the bridge")
    letters = {(d["topic"], d["code"]) for d in dead_letters(client=client)}
    assert letters == {
        (f"plantstream/v1/{facility}/press-1", "invalid_json"),
        (f"plantstream/v1/{facility}/press-1", "forbidden_facility"),
        (f"plantstream/v1/{facility}/press-1/humidity", "undecodable_payload"),
    }
    assert stream_readings(redis_url) == []


def test_a_bridge_for_some_facilities_refuses_the_others(
    mosquitto_url, start_bridge, redis_url, facility
):
    start_bridge(mosquitto_url, mqtt_facilities=facility)
    _pub(f"plantstream/v1/x{facility}/press-1/humidity", "40")
    _pub(f"plantstream/v1/{facility}/press-1/humidity", "41")
    wait_until(lambda: len(stream_readings(redis_url)) >= 1, timeout=20, what="the bridge")
    client = redis.Redis.from_url(redis_url)
    wait_until(lambda: len(dead_letters(client=client)) >= 1, timeout=20, what="the bridge")
    assert [r[0] for r in stream_readings(redis_url)] == [facility]
    assert dead_letters(client=client)[0]["code"] == "forbidden_facility"
