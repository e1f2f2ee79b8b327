"""The edge agent against real peers: an asyncua OPC UA server, a pymodbus slave, plantstream."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fixtures.edge import Destination, edge_config, modbus_source, opcua_source
from fixtures.modbus import ModbusSlave
from fixtures.opcua import OpcUaMachine
from pydantic import SecretStr

from plantstream.edge import Agent
from plantstream.edge.config import EdgeConfig
from plantstream.testing import wait_until

pytestmark = pytest.mark.integration


@contextmanager
def running(config: dict[str, object], key: str) -> Iterator[Agent]:
    agent = Agent(EdgeConfig.model_validate(config), SecretStr(key))
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: agent.health_port is not None, timeout=10, what="the agent")
        yield agent
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the agent did not stop"


def health(agent: Agent) -> dict[str, object]:
    answer = httpx.get(f"http://127.0.0.1:{agent.health_port}/healthz", timeout=5)
    return answer.json()  # type: ignore[no-any-return]


def test_modbus_register_map_reaches_plantstream(
    tmp_path: Path, modbus_slave: ModbusSlave, destination: Destination
) -> None:
    config = edge_config(tmp_path, destination.url, [modbus_source(modbus_slave.port)])
    signals = {s.metric: s for s in EdgeConfig.model_validate(config).sources[0].signals}
    modbus_slave.set(signals["pressure"], 6.5)
    modbus_slave.set(signals["temperature"], -235)  # int16, scaled 0.1: -23.5 degC
    modbus_slave.set(signals["production_count"], 3_000_000_000)  # past int32
    modbus_slave.set(signals["flow_rate"], 1234.5678)
    modbus_slave.set(signals["spindle_speed"], 12_000)
    with running(config, destination.key) as agent:
        wanted = {("pump-1", m) for m in signals}
        wait_until(lambda: wanted <= set(destination.stored()), timeout=30, what="all five signals")
        doc = health(agent)
    stored = destination.stored()
    last = {key: points[-1][1] for key, points in stored.items()}
    assert last[("pump-1", "pressure")] == 6.5
    assert last[("pump-1", "temperature")] == pytest.approx(-23.5)
    assert last[("pump-1", "production_count")] == 3_000_000_000
    assert last[("pump-1", "flow_rate")] == 1234.5678
    assert last[("pump-1", "spindle_speed")] == 12_000
    assert type(last[("pump-1", "production_count")]) is int  # exact: an int64 signal
    assert doc["sources"]["pumps"]["state"] == "connected"  # type: ignore[index]
    # one poll pass stamps all of its signals with one time: the rows line up
    times = {key: {ts for ts, _ in points} for key, points in stored.items()}
    assert times[("pump-1", "pressure")] & times[("pump-1", "temperature")]


def test_a_silent_modbus_slave_is_reported_then_its_gap(
    tmp_path: Path, modbus_slave: ModbusSlave, destination: Destination
) -> None:
    config = edge_config(tmp_path, destination.url, [modbus_source(modbus_slave.port)])
    with running(config, destination.key) as agent:
        wait_until(lambda: destination.count() > 0, timeout=30, what="first readings")
        modbus_slave.silent = True
        wait_until(
            lambda: health(agent)["sources"]["pumps"]["state"] == "unresponsive",  # type: ignore[index]
            timeout=10,
            what="the silent slave reported",
        )
        doc = health(agent)
        assert doc["status"] == "degraded"
        assert "source pumps is unresponsive" in doc["problems"]  # type: ignore[operator]
        modbus_slave.silent = False
        wait_until(
            lambda: health(agent)["sources"]["pumps"]["gaps"],
            timeout=15,
            what="the gap",  # type: ignore[index]
        )
        gap = health(agent)["sources"]["pumps"]["gaps"][0]  # type: ignore[index]
        assert gap["seconds"] > 0
        metrics = httpx.get(f"http://127.0.0.1:{agent.health_port}/metrics", timeout=5).text
        assert 'plantstream_edge_source_gaps_total{source="pumps"} 1.0' in metrics


def test_opcua_values_types_quality_and_units(
    tmp_path: Path, opcua_shared: OpcUaMachine, destination: Destination
) -> None:
    config = edge_config(tmp_path, destination.url, [opcua_source(opcua_shared.endpoint)])
    with running(config, destination.key) as agent:
        wanted = {("press-1", m) for m in ("temperature", "pressure", "vibration_rms")}
        wait_until(lambda: wanted <= set(destination.stored()), timeout=40, what="OPC UA data")
        # the server writes a bad Vibration sample now and then: wait until one was kept
        wait_until(
            lambda: any(row[1] == "vibration_rms" for row in agent.queue.dead_letter_rows(1000)),
            timeout=40,
            what="a bad sample kept as a dead letter",
        )
        collector = agent.collectors[0]
        # EUInformation / EURange were read from the server
        from fixtures.opcua import node_id

        eu = collector.engineering[node_id("Temperature")]  # type: ignore[union-attr]
        assert (eu.unit, eu.low, eu.high) == ("degC", -20.0, 300.0)
        shown = health(agent)["sources"]["press"]["engineering"]  # type: ignore[index]
        assert shown["press-1/pressure"] == {"unit": "bar", "low": 0.0, "high": 250.0}
        doc = health(agent)
        dead_letters = agent.queue.dead_letter_rows(1000)
    stored = destination.stored()
    # values arrive exactly as the server wrote them, at the source timestamp
    writes = {w["ts_us"]: w["value"] for w in opcua_shared.writes("Temperature")}
    for ts, value in stored[("press-1", "temperature")]:
        assert writes[ts] == value
    assert doc["queue"]["held"] == {}  # type: ignore[index]
    # a bad sample comes without a value (asyncua nulls it): kept as a dead letter with its
    # raw StatusCode, not sent as a number and not lost
    dead = [row for row in dead_letters if row[1] == "vibration_rms"]
    assert dead, "no bad sample of Vibration was kept"
    assert {(row[3], row[4], row[5], row[6]) for row in dead} == {(None, 2, 0x808C0000, "no_value")}
    good = {ts for ts, _ in stored[("press-1", "vibration_rms")]}
    bad_writes = {w["ts_us"] for w in opcua_shared.writes("Vibration") if w["status"]}
    assert not good & bad_writes
    assert {row[2] for row in dead} <= bad_writes


@pytest.mark.parametrize("destination_settings", [{"quota_new_sensors_per_second": "0.5"}])
def test_readings_refused_not_now_are_retried_in_order(
    tmp_path: Path, modbus_slave: ModbusSlave, destination: Destination
) -> None:
    """A 202 refusing some readings with a push-back code (here: the new-sensor quota lets
    five of six sensors in at once) keeps them and what follows them queued, and retries."""
    source = modbus_source(modbus_slave.port)
    sixth = {"device": "pump-2", "metric": "current", "address": 2, "data_type": "int16"}
    source["signals"] = [*source["signals"], sixth]  # type: ignore[misc]
    config = edge_config(tmp_path, destination.url, [source])
    # one batch at a time: the six new sensors arrive in one request, past the quota's burst
    config["destination"]["in_flight"] = 1  # type: ignore[index]
    with running(config, destination.key) as agent:
        wait_until(lambda: len(destination.stored()) == 6, timeout=60, what="all six sensors")
        modbus_slave.silent = True
        wait_until(lambda: agent.queue.depth == 0, timeout=30, what="the queue drained")
        metrics = httpx.get(f"http://127.0.0.1:{agent.health_port}/metrics", timeout=5).text
        dead = agent.queue.dead_letter_rows()
    assert dead == []
    assert 'plantstream_edge_forward_errors_total{kind="quota_new_sensors_rate"}' in metrics
    stored = destination.stored()
    # one poll stamps all six: every signal has every poll, none is missing for the retried one
    series = {key: [ts for ts, _ in points] for key, points in stored.items()}
    first = max(points[0] for points in series.values())
    assert len({tuple(ts for ts in points if ts >= first) for points in series.values()}) == 1


def test_browse_lists_the_servers_variables_as_a_config(
    tmp_path: Path, opcua_shared: OpcUaMachine
) -> None:
    import subprocess
    import sys

    import yaml
    from fixtures.opcua import node_id

    from plantstream.edge.config import parse_config

    ran = subprocess.run(
        [sys.executable, "-m", "plantstream", "edge", "browse", opcua_shared.endpoint],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    skeleton = yaml.safe_load(ran.stdout)
    signals = {s["node"]: s for s in skeleton["sources"][0]["signals"]}
    assert signals[node_id("Temperature")]["type"] == "double"
    assert signals[node_id("Running")]["type"] == "bool"
    assert signals[node_id("State")]["type"] == "string"
    assert signals[node_id("Temperature")]["device"] == "Press1"
    # with a facility and a destination it is a config the agent takes
    skeleton |= {"facility": "plant-01", "destination": {"url": "http://127.0.0.1:1"}}
    assert parse_config(skeleton, {}, where="browse").sources[0].endpoint == opcua_shared.endpoint
