"""The forwarder against a real HTTP server following plantstream's contracts (fixtures.edge_http):
several batches in flight with every signal in order and every reading once, Retry-After held
by every lane, readings past the live window through the history path, typed values from the
real OPC UA and Modbus peers.

The contract server can do what a real server will not on demand (a 429 on the history
path, no history endpoint at all); the same paths are also run against the real
``plantstream serve all`` (the ``destination`` fixture, whose facility declares
``fixtures.edge.SIGNALS``): the history endpoint, typed values from the real peers, the
typed body.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fixtures.edge import (
    FACILITY,
    STATES,
    Destination,
    edge_config,
    modbus_source,
    opcua_source,
)
from fixtures.edge_http import ContractServer, contract_server
from fixtures.modbus import ModbusSlave
from fixtures.opcua import OpcUaMachine
from pydantic import SecretStr

from plantstream.edge import Agent, EdgeQueue, EdgeReading, EdgeStatus, Forwarder
from plantstream.edge.config import Destination as DestinationConfig
from plantstream.edge.config import EdgeConfig, QueueConfig, ValueKind
from plantstream.edge.health import health
from plantstream.edge.records import UNCERTAIN
from plantstream.model.readings import now_us
from plantstream.testing import wait_until

pytestmark = pytest.mark.integration
HOUR_US = 3600 * 1_000_000


def _reading(device: str, metric: str, ts_us: int, value: float) -> EdgeReading:
    return EdgeReading("s", device, metric, ts_us, ValueKind.DOUBLE, value)


@contextmanager
def forwarding(
    tmp_path: Path,
    to: ContractServer | Destination,
    readings: list[EdgeReading],
    **options: object,
) -> Iterator[tuple[EdgeQueue, Forwarder]]:
    """A queue holding ``readings`` and a running forwarder to ``to`` (its url and key)."""
    live_window = float(options.pop("live_window_hours", 168))  # type: ignore[arg-type]
    queue = EdgeQueue(QueueConfig(path=tmp_path / "q.db", live_window_hours=live_window))
    for i in range(0, len(readings), 5000):
        queue.append(readings[i : i + 5000], now_us=now_us())
    dest = DestinationConfig(url=to.url, **options)
    fwd = Forwarder(queue=queue, status=EdgeStatus(), destination=dest, facility=FACILITY,
                    key=SecretStr(to.key))  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=fwd.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield queue, fwd
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the forwarder did not stop"
        fwd.close()
        queue.close()


def _drained(queue: EdgeQueue) -> bool:
    stats = queue.stats()
    return stats.depth == 0 and not stats.held


def test_batches_travel_in_parallel_each_signal_in_order_and_once(tmp_path: Path) -> None:
    start = now_us() - 600 * 1_000_000
    readings = [
        _reading(f"m-{i % 40:02d}", "pressure", start + i * 1000, float(i % 100))
        for i in range(20_000)
    ]
    with contract_server() as server:
        server.meet = 4  # the first live requests wait until four are in at once
        with forwarding(tmp_path, server, readings, batch_size=500, in_flight=4) as (queue, _):
            wait_until(lambda: _drained(queue), timeout=120, what="the backlog forwarded")
            counters = queue.stats().counters
    assert server.most_inside == 4
    arrived = server.arrived["live"]
    assert sum(len(points) for points in arrived.values()) == 20_000  # nothing sent twice
    assert len(arrived) == 40
    for points in arrived.values():  # each signal arrived in its time order
        times = [ts for ts, _ in points]
        assert times == sorted(times)
    expected = {(r.device, r.metric, r.ts_us, r.value) for r in readings}
    got = {(d, m, ts, v) for (d, m), points in arrived.items() for ts, v in points}
    assert got == expected
    assert counters["delivered"] == 20_000


def test_push_back_with_retry_after_holds_every_lane(tmp_path: Path) -> None:
    start = now_us() - 600 * 1_000_000
    readings = [_reading(f"m-{i % 40:02d}", "pressure", start + i, 1.0) for i in range(8000)]
    with contract_server() as server:
        server.refuse_next["live"] = [(429, "2")]
        with forwarding(tmp_path, server, readings, batch_size=500, in_flight=4) as (queue, fwd):
            wait_until(lambda: _drained(queue), timeout=120, what="the backlog forwarded")
    live = [(status, at) for path, status, at in server.answered if path == "/v1/readings"]
    refused_at = next(at for status, at in live if status == 429)
    # requests already on their way when the 429 came may land just after it; after that no
    # lane sends until Retry-After has passed
    early = [at - refused_at for status, at in live if refused_at + 0.5 < at < refused_at + 1.8]
    assert early == []
    assert any(at >= refused_at + 2.0 for _, at in live)
    assert sum(len(p) for p in server.arrived["live"].values()) == 8000
    registry = fwd.status.metrics.registry
    assert (
        registry.get_sample_value("plantstream_edge_forward_errors_total", {"kind": "overloaded"})
        == 1
    )


def test_readings_past_the_live_window_go_through_the_history_path(tmp_path: Path) -> None:
    now = now_us()
    old = [
        _reading("m-1", "pressure", now - 3 * HOUR_US + i * 1000, 2.0 + i % 7) for i in range(300)
    ]
    # inside the agent's window (2 h) but not the server's (1 h): refused by the live path
    # as timestamp_too_old, then taken by the history path
    late = [_reading("m-2", "temperature", now - 90 * 60 * 1_000_000 + i, 20.0) for i in range(5)]
    bad = [
        _reading("m-3", "pressure", now - 3 * HOUR_US, 5000.0),  # out of range: never stored
        _reading("m-3", "no_such_metric", now - 3 * HOUR_US, 1.0),
    ]
    fresh = [_reading("m-1", "pressure", now - 60 * 1_000_000 + i, 1.5) for i in range(200)]
    with contract_server(live_window_hours=1) as server:
        server.refuse_next["history"] = [(429, "0.5")]
        with forwarding(
            tmp_path, server, [*old, *late, *bad, *fresh], batch_size=100, live_window_hours=2
        ) as (queue, fwd):
            wait_until(lambda: _drained(queue), timeout=60, what="live and history forwarded")
            dead = queue.dead_letter_rows()
            counters = queue.stats().counters
            doc = health(queue, fwd.status)
    history = {
        (d, m, ts) for (d, m), points in server.arrived["history"].items() for ts, _ in points
    }
    live = {(d, m, ts) for (d, m), points in server.arrived["live"].items() for ts, _ in points}
    assert history == {(r.device, r.metric, r.ts_us) for r in [*old, *late]}
    assert live == {(r.device, r.metric, r.ts_us) for r in fresh}
    assert sum(len(p) for p in server.arrived["history"].values()) == len(old) + len(late)
    # refused by the history path: dead-lettered with its code and message, sent once only
    assert sorted((row[1], row[6]) for row in dead) == [
        ("no_such_metric", "unknown_metric"), ("pressure", "value_out_of_range")
    ]  # fmt: skip
    assert all(row[7] for row in dead)  # the server's message is kept
    history_answers = [s for p, s, _ in server.answered if p == "/v1/readings/history"]
    assert history_answers[0] == 429
    assert set(history_answers[1:]) == {200}
    assert counters["delivered"] == len(old) + len(late) + len(fresh)
    registry = fwd.status.metrics.registry
    sent = registry.get_sample_value("plantstream_edge_readings_history_forwarded_total")
    assert sent == len(old) + len(late)
    assert doc["history"]["waiting"] == 0


def test_without_a_history_endpoint_old_readings_wait_and_health_says_so(tmp_path: Path) -> None:
    now = now_us()
    old = [_reading("m-1", "pressure", now - 3 * HOUR_US + i, 3.0) for i in range(50)]
    with contract_server(live_window_hours=1) as server:
        server.history_available = False
        with forwarding(tmp_path, server, old, live_window_hours=1, max_backoff_seconds=1) as (
            queue,
            fwd,
        ):
            wait_until(lambda: fwd.status.history.state == "unavailable", timeout=30,
                       what="the missing endpoint noticed")  # fmt: skip
            doc = health(queue, fwd.status)
            assert doc["status"] == "degraded"
            assert doc["history"]["waiting"] == 50
            assert any("no history path" in p for p in doc["problems"])
            assert queue.stats().held == {"older_than_live_window": 50}
            server.history_available = True  # plantstream upgraded: the backlog goes
            wait_until(lambda: _drained(queue), timeout=30, what="the history backlog sent")
    assert sum(len(p) for p in server.arrived["history"].values()) == 50
    assert server.arrived["live"] == {}


def _typed_from_peers(
    tmp_path: Path, to: ContractServer | Destination, opcua: OpcUaMachine, modbus: ModbusSlave
) -> dict[tuple[str, str], list[tuple[int, object]]]:
    """Run an agent on the real OPC UA and Modbus peers into ``to`` until the boolean and
    every state arrived; what ``to`` stored, checked against what the OPC UA server wrote."""
    config = edge_config(tmp_path, to.url, [
        opcua_source(opcua.endpoint, typed=True),
        modbus_source(modbus.port, typed=True),
    ])  # fmt: skip
    parsed = EdgeConfig.model_validate(config)
    coil = next(s for s in parsed.sources[1].signals if s.metric == "running")
    modbus.set(coil, 1)  # type: ignore[arg-type]
    agent = Agent(parsed, SecretStr(to.key))
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:

        def every_state() -> bool:
            stored = to.stored()
            states = {v for _, v in stored.get(("press-1", "machine_state"), [])}
            wanted = {("press-1", "running"), ("pump-2", "running")}
            return states == set(STATES) and wanted <= set(stored)

        wait_until(every_state, timeout=60, what="the boolean and every state")
    finally:
        stop.set()
        thread.join(30)
    stored: dict[tuple[str, str], list[tuple[int, object]]] = dict(to.stored())
    for node, metric in (("State", "machine_state"), ("Running", "running")):
        truth = {w["ts_us"]: w["value"] for w in opcua.writes(node)}
        points = stored[("press-1", metric)]
        assert all(truth[ts] == value for ts, value in points), metric
        assert {type(value) for _, value in points} == {type(truth[ts]) for ts, _ in points}
    assert {type(v) for _, v in stored[("press-1", "machine_state")]} == {str}
    assert {v for _, v in stored[("pump-2", "running")]} == {True}
    return stored


def test_typed_values_from_real_opcua_and_modbus_peers_arrive_typed(
    tmp_path: Path, opcua_shared: OpcUaMachine, modbus_slave: ModbusSlave
) -> None:
    with contract_server() as server:
        stored = _typed_from_peers(tmp_path, server, opcua_shared, modbus_slave)
    assert type(stored[("pump-1", "production_count")][-1][1]) is int  # an exact int64


def test_the_real_ingest_takes_the_typed_body_exactly(
    tmp_path: Path, destination: Destination
) -> None:
    """Against ``plantstream serve all``: an int64 arrives as an integer (the built-in counter
    tops at 1e12; past 2**53 is covered by the wire test), a reading of uncertain quality keeps
    its raw OPC UA StatusCode, several lanes deliver every signal once."""
    import psycopg

    now = now_us() - 60 * 1_000_000
    big = 10**12 - 7
    readings = [
        EdgeReading("s", "m-1", "production_count", now, ValueKind.INT64, big),
        EdgeReading(
            "s",
            "m-1",
            "pressure",
            now,
            ValueKind.DOUBLE,
            4.25,
            quality=UNCERTAIN,
            raw_status=0x40920000,
        ),
        *(_reading(f"m-{i % 8}", "temperature", now + i, 20.0 + i % 10) for i in range(2000)),
    ]
    with forwarding(tmp_path, destination, readings, batch_size=100, in_flight=4) as (queue, _):
        wait_until(lambda: _drained(queue), timeout=60, what="forwarded")
        assert [(r[1], r[6], r[7]) for r in queue.dead_letter_rows()] == []
    wait_until(lambda: destination.count() == len(readings), timeout=60, what="all stored")
    stored = destination.stored()
    assert stored[("m-1", "production_count")] == [(now, big)]
    assert type(stored[("m-1", "production_count")][0][1]) is int
    with psycopg.connect(destination.database_url, autocommit=True) as conn:
        quality = conn.execute(
            "SELECT r.quality, r.quality_code FROM readings r JOIN sensors s ON s.id = r.sensor_id "
            "WHERE s.device = 'm-1' AND s.metric = 'pressure'"
        ).fetchall()
    assert quality == [(1, 0x40920000)]


@pytest.mark.parametrize("destination_settings", [{"max_past_seconds": "3600"}])
def test_old_readings_reach_the_real_history_endpoint_and_its_refusals_are_kept(
    tmp_path: Path, destination: Destination
) -> None:
    """Against ``plantstream serve all`` with a one-hour live window: readings three hours old
    go through ``POST /v1/readings/history`` and are stored once; what it refuses is
    dead-lettered with the server's code."""
    now = now_us()
    old = [
        _reading("m-1", "pressure", now - 3 * HOUR_US + i * 1000, 2.0 + i % 7) for i in range(300)
    ]
    bad = [_reading("m-3", "no_such_metric", now - 3 * HOUR_US, 1.0)]
    fresh = [_reading("m-1", "pressure", now - 60 * 1_000_000 + i, 1.5) for i in range(200)]
    with forwarding(
        tmp_path, destination, [*old, *bad, *fresh], batch_size=100, live_window_hours=1
    ) as (queue, fwd):
        wait_until(lambda: _drained(queue), timeout=60, what="live and history forwarded")
        dead = queue.dead_letter_rows()
        sent = fwd.status.metrics.registry.get_sample_value(
            "plantstream_edge_readings_history_forwarded_total"
        )
    assert sent == len(old)
    assert [(row[1], row[6]) for row in dead] == [("no_such_metric", "unknown_metric")]
    wait_until(lambda: destination.count() == len(old) + len(fresh), timeout=60, what="stored")
    stored = destination.stored()[("m-1", "pressure")]
    assert stored == sorted((r.ts_us, r.value) for r in [*old, *fresh])


def test_typed_values_from_real_opcua_and_modbus_peers_reach_the_real_ingest(
    tmp_path: Path, opcua_shared: OpcUaMachine, modbus_slave: ModbusSlave, destination: Destination
) -> None:
    """The same peers into ``plantstream serve all`` whose facility declares ``running``
    (bool) and ``machine_state`` (state): stored with their types."""
    stored = _typed_from_peers(tmp_path, destination, opcua_shared, modbus_slave)
    assert {type(v) for _, v in stored[("press-1", "running")]} == {bool}
