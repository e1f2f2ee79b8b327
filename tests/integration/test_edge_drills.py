"""Edge drills against real peers: plantstream away, the OPC UA server restarted, the agent
SIGKILLed again and again, the queue's budget exhausted. Nothing collected is lost or doubled."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from fixtures.edge import Destination, edge_config, modbus_source, opcua_source
from fixtures.modbus import ModbusSlave
from fixtures.opcua import OpcUaMachine
from test_edge_collectors import health, running

from plantstream.local.ports import free_port
from plantstream.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_plantstream_away_for_20_s_every_reading_arrives_once(
    tmp_path: Path, opcua_shared: OpcUaMachine, destination: Destination
) -> None:
    config = edge_config(tmp_path, destination.url, [opcua_source(opcua_shared.endpoint)])
    with running(config, destination.key) as agent:
        wait_until(lambda: destination.count() > 20, timeout=40, what="readings flowing")
        destination.stop()
        away_from = time.time()
        wait_until(lambda: time.time() - away_from > 20, timeout=30, what="a 20 s outage")
        during = health(agent)
        destination.start()
        back_us = int(time.time() * 1e6)
        wait_until(
            lambda: max(ts for ts, _ in destination.stored()[("press-1", "pressure")]) > back_us,
            timeout=60,
            what="the backlog drained",
        )
    # while away, the edge kept collecting into its queue and said it was backing off
    assert during["queue"]["depth"] > 100, during["queue"]
    assert during["forward"]["state"] == "backing_off"
    stored = destination.stored()
    for node, metric in (("Temperature", "temperature"), ("Pressure", "pressure")):
        points = stored[("press-1", metric)]
        first = points[0][0]
        written = [(w["ts_us"], w["value"]) for w in opcua_shared.writes(node)]
        expected = [(ts, v) for ts, v in written if first <= ts <= back_us]
        got = [(ts, v) for ts, v in points if ts <= back_us]
        assert got == expected, f"{metric}: {len(got)} stored, {len(expected)} written"
        assert len(expected) > 20 * 15  # the 20 s outage is in it (a write every 50 ms)


def test_opcua_server_restart_resubscribes_and_reports_the_gap(
    tmp_path: Path, opcua_machine: OpcUaMachine, destination: Destination
) -> None:
    config = edge_config(tmp_path, destination.url, [opcua_source(opcua_machine.endpoint)])
    with running(config, destination.key) as agent:
        collector = agent.collectors[0]
        wait_until(lambda: destination.count() > 0, timeout=40, what="first readings")
        opcua_machine.stop()
        wait_until(
            lambda: health(agent)["sources"]["press"]["state"] == "disconnected",
            timeout=20,
            what="the lost server reported",
        )
        assert "source press is disconnected" in health(agent)["problems"]
        stopped_us = int(time.time() * 1e6)
        opcua_machine.start()
        wait_until(lambda: collector.subscriptions == 2, timeout=60, what="resubscribed")
        wait_until(
            lambda: (
                max(ts for ts, _ in destination.stored()[("press-1", "temperature")]) > stopped_us
            ),
            timeout=30,
            what="readings after the restart",
        )
        doc = health(agent)
        metrics = httpx.get(f"http://127.0.0.1:{agent.health_port}/metrics", timeout=5).text
        gaps = agent.queue.gaps()
    gap = doc["sources"]["press"]["gaps"][0]
    assert doc["sources"]["press"]["state"] == "connected"
    assert gap["seconds"] > 1, gap
    assert 'plantstream_edge_source_gaps_total{source="press"} 1.0' in metrics
    assert gaps
    assert gaps[0][0] == "press"


def _counters(db: Path) -> dict[str, int]:
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return dict(conn.execute("SELECT name, value FROM counters").fetchall())
    except sqlite3.OperationalError:
        return {}


def test_agent_sigkilled_ten_times_loses_and_doubles_nothing(
    tmp_path: Path, modbus_slave: ModbusSlave, destination: Destination
) -> None:
    health_port = free_port()
    config = edge_config(tmp_path, destination.url, [modbus_source(modbus_slave.port, poll_ms=20)])
    config["health"] = {"listen": f"127.0.0.1:{health_port}"}
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    queue_db = Path(config["queue"]["path"])  # type: ignore[index]
    env = {**os.environ, "PLANTSTREAM_EDGE_TEST_KEY": destination.key}
    argv = [sys.executable, "-m", "plantstream.edge", "--config", str(path)]
    rng = random.Random(16)
    for _ in range(10):
        before = _counters(queue_db).get("stored", 0)
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
        try:
            wait_until(
                lambda b=before: _counters(queue_db).get("stored", 0) > b + 50,
                timeout=30,
                what="the agent collecting",
            )
            time.sleep(rng.uniform(0.0, 0.8))  # the kill lands anywhere: a chosen moment, no timing
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{health_port}/healthz"

        def drained() -> bool:
            try:
                return json.loads(httpx.get(url, timeout=2).text)["queue"]["depth"] == 0
            except (httpx.HTTPError, ValueError):
                return False

        wait_until(lambda: destination.count() > 0, timeout=30, what="readings arriving")
        modbus_slave.silent = True  # nothing new: the queue only drains
        wait_until(drained, timeout=60, what="the queue drained")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    counters = _counters(queue_db)
    stored = destination.stored()
    total = sum(len(points) for points in stored.values())
    # every reading the queue ever committed is in plantstream exactly once (the table's key
    # is (sensor, ts): a replay after a kill between 202 and delete was stored once)
    assert counters["stored"] == total + counters.get("dead_lettered", 0), counters
    assert counters.get("dead_lettered", 0) == 0
    assert counters["delivered"] == total  # the deletes after each 202 are exact too
    assert len({len(points) for points in stored.values()}) == 1  # one poll, all six signals


def test_queue_budget_exhausted_refuses_loudly(tmp_path: Path, modbus_slave: ModbusSlave) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # plantstream away for the whole test
    config = edge_config(
        tmp_path, closed, [modbus_source(modbus_slave.port, poll_ms=10)], max_readings=600
    )
    with running(config, "no-key-needed") as agent:
        wait_until(lambda: health(agent)["queue"]["overflow"], timeout=30, what="overflow")
        doc = health(agent)
        metrics = httpx.get(f"http://127.0.0.1:{agent.health_port}/metrics", timeout=5).text
        depth = doc["queue"]["depth"]
    assert doc["status"] == "degraded"
    assert "QUEUE FULL: new readings are refused" in doc["problems"]
    assert depth == 600  # what was stored is kept: nothing older was dropped
    assert doc["queue"]["totals"]["refused"] > 0
    refused = [
        line
        for line in metrics.splitlines()
        if line.startswith("plantstream_edge_readings_refused_total")
    ]
    assert refused
    assert float(refused[0].split()[-1]) > 0
    assert "plantstream_edge_queue_overflow 1.0" in metrics


def test_drop_oldest_only_when_configured(tmp_path: Path, modbus_slave: ModbusSlave) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    config = edge_config(
        tmp_path, closed, [modbus_source(modbus_slave.port, poll_ms=10)],
        max_readings=600, overflow="drop_oldest",
    )  # fmt: skip
    with running(config, "no-key-needed") as agent:
        wait_until(
            lambda: health(agent)["queue"]["totals"].get("dropped", 0) > 0,
            timeout=30,
            what="the oldest dropped",
        )
        doc = health(agent)
    assert doc["queue"]["depth"] == 600
    assert doc["queue"]["totals"].get("refused", 0) == 0
