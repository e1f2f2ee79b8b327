"""The embedded broker (amqtt): per-facility logins and ACLs, with the bridge on it."""

from __future__ import annotations

import subprocess

import pytest
from fixtures.mqtt import stream_readings

from plantstream.testing import wait_until


def _pub(broker, topic: str, message: str, username: str, password: str) -> int:
    port = broker.url().rsplit(":", 1)[1]
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-q", "1", "-V", "mqttv311"]
    args += ["-u", username, "-P", password, "-t", topic, "-m", message]
    return subprocess.run(args, capture_output=True, timeout=30, check=False).returncode


@pytest.fixture
def needs_mosquitto_pub(mosquitto_url: str) -> None:
    """mosquitto_pub is the independent client here (the Mosquitto package brings both)."""


def test_a_facility_login_reaches_its_own_topics_only(
    needs_mosquitto_pub, embedded_broker, start_bridge, redis_url
):
    user, password = embedded_broker.bridge_credentials()
    start_bridge(embedded_broker.url(), username=user, password=password, mqtt_protocol="3.1.1")
    a_user, a_password = embedded_broker.facility_credentials("plant-a")
    # plant-a's login may publish to plant-b's topic (3.1.1 has no way to refuse a PUBLISH),
    # but the broker does not deliver it; its own topic arrives
    assert (
        _pub(embedded_broker, "plantstream/v1/plant-b/m1/humidity", "41", a_user, a_password) == 0
    )
    assert (
        _pub(embedded_broker, "plantstream/v1/plant-a/m1/humidity", "42", a_user, a_password) == 0
    )
    wait_until(lambda: stream_readings(redis_url), timeout=30, what="plant-a's reading")
    assert [(r[0], r[4]) for r in stream_readings(redis_url)] == [("plant-a", 42.0)]


def test_a_wrong_password_and_anonymous_clients_are_refused(needs_mosquitto_pub, embedded_broker):
    user, _ = embedded_broker.facility_credentials("plant-a")
    assert _pub(embedded_broker, "plantstream/v1/plant-a/m1/humidity", "1", user, "wrong") != 0
    port = embedded_broker.url().rsplit(":", 1)[1]
    anonymous = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv311", "-t", "x", "-m", "1"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert anonymous.returncode != 0


def test_serve_mqtt_without_a_url_runs_on_the_embedded_broker(
    needs_mosquitto_pub, tmp_path, redis_url
):
    from fixtures.mqtt import BridgeRuntime

    from plantstream.mqtt import build_bridge, open_session
    from plantstream.settings import Settings

    settings = Settings(data_dir=tmp_path, mqtt_facilities="plant-x", mqtt_client_id="emb")
    session = open_session(settings)  # starts the broker under <data dir>/mqtt
    broker = session.embedded
    assert broker is not None
    try:
        assert session.settings.mqtt_protocol == "3.1.1"
        bridge, _ = build_bridge(BridgeRuntime(settings, redis_url), session)
        session.start(bridge)
        import threading

        stop = threading.Event()
        worker = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
        worker.start()
        user, password = broker.facility_credentials("plant-x")
        assert _pub(broker, "plantstream/v1/plant-x/m1/humidity", "44", user, password) == 0
        wait_until(lambda: stream_readings(redis_url), timeout=30, what="the reading")
        assert [(r[0], r[4]) for r in stream_readings(redis_url)] == [("plant-x", 44.0)]
        stop.set()
        worker.join(timeout=30)
        session.close()
    finally:
        broker.stop()
