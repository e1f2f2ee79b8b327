"""The bridge SIGKILLed again and again under QoS 1 Sparkplug traffic: nothing lost, nothing twice.

A private Mosquitto (no cap on queued messages: the machine's drops past 1000, acked or not)
holds the bridge's persistent session while it is dead; the bridge acks a message
only once the stream holds its readings, so every reading Mosquitto accepted from the edge
node ends up in PostgreSQL exactly once, and the rollups equal the raw rows.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from fixtures.faults import ProcessorProcess, processor_env, stored_count
from fixtures.mqtt import QosEdgeNode
from fixtures.pipeline import assert_rollups_match_raw
from paho.mqtt.enums import CallbackAPIVersion

from plantstream.mqtt.client import parse_url
from plantstream.testing import readings_count, wait_for_readings, wait_until

MESSAGES = 2000
METRICS = 50
KILLS = 10


class HostState:
    """The retained ``spBv1.0/STATE/{host}`` as an edge node sees it: is the host online?"""

    def __init__(self, url: str, host_id: str) -> None:
        self.births = 0
        self.online = False
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        address = parse_url(url)
        self.client.connect(address.host, address.port)
        self.client.subscribe(f"spBv1.0/STATE/{host_id}", qos=1)
        self.client.loop_start()

    def _on_message(self, _c, _u, msg) -> None:
        state = json.loads(msg.payload)
        self.online = state["online"]
        self.births += bool(state["online"])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _bridge(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "plantstream", "serve", "mqtt"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
def test_a_bridge_killed_ten_times_stores_every_accepted_reading_once(
    private_mosquitto, database_url, redis_url, tmp_path, facility
):
    mosquitto_url = private_mosquitto
    common = {
        "database_url": database_url,
        "redis_url": redis_url,
        "stream_name": "readings",
        "data_dir": tmp_path / "data",
        "stream_shards": 4,
    }
    processor = ProcessorProcess(
        processor_env(**common, lease_seconds=2), tmp_path / "processor.log", tmp_path
    )
    host_id = f"kill-{facility}"
    bridge_env = processor_env(
        **common,
        mqtt_url=mosquitto_url,
        mqtt_client_id=host_id,
        sparkplug_host_id=host_id,
        mqtt_session_expiry_seconds=600,
        mqtt_plain_topics="false",
    )
    state = HostState(mosquitto_url, host_id)
    bridge = _bridge(bridge_env, tmp_path / "bridge.log")
    node = QosEdgeNode(mosquitto_url, group=facility, edge="e1", device="d1", metrics=METRICS)
    try:
        wait_until(lambda: state.births >= 1, timeout=60, what="the bridge's STATE birth")
        start_ms = int(time.time() * 1000) - MESSAGES - 60_000
        node.birth(start_ms)

        killing = threading.Event()
        killing.set()

        def publish() -> None:
            for i in range(MESSAGES):
                node.data(start_ms + 1 + i)
                # paced while the kills go on (a restart takes seconds on a busy machine) so
                # that the kills land in the traffic; then the rest as fast as it goes
                time.sleep(0.15 if killing.is_set() else 0.002)

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        rng = random.Random(15)
        births = 0
        with psycopg.connect(database_url, autocommit=True) as conn:
            for _ in range(KILLS):
                # SIGKILL at a random point once this bridge is up (its STATE birth is out)
                # and has moved some readings along
                wait_until(lambda b=births: state.births > b, timeout=120, what="the restart")
                births = state.births
                target = stored_count(conn) + rng.randint(50, 600)
                wait_until(lambda t=target: stored_count(conn) >= t, timeout=120, what="progress")
                bridge.kill()  # no STATE death, no acks for the batch in hand
                bridge.wait(timeout=30)
                bridge = _bridge(bridge_env, tmp_path / "bridge.log")
        killing.clear()
        assert node.acked < node.sent or publisher.is_alive(), "the kills came after the traffic"
        publisher.join(timeout=300)
        wait_until(lambda: node.acked == node.sent, timeout=60, what="every PUBACK")
        expected = MESSAGES * METRICS + METRICS  # the DBIRTH carries one value per metric
        stored, _ = wait_for_readings(database_url, expected, timeout=180)
        assert stored == expected
        with psycopg.connect(database_url, autocommit=True) as conn:
            assert readings_count(conn) == expected
            assert_rollups_match_raw(conn)
    finally:
        node.close()
        state.close()
        bridge.kill()
        bridge.wait(timeout=30)
        processor.kill()
