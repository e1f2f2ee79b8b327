"""Sparkplug B against an edge node nobody here wrote (Eclipse Tahu's JavaScript client).

Births with aliases and properties, data by alias, a device death and a node death, and a
rebirth the host asks for when it does not know the node (its state was lost).
"""

from __future__ import annotations

import redis
from fixtures.mqtt import stream_readings

from plantstream.store.sparkplug_state import facility_nodes
from plantstream.testing import wait_until


def _nodes(redis_url: str, facility: str) -> dict[str, dict]:
    client = redis.Redis.from_url(redis_url)
    try:
        return {n["node"]: n for n in facility_nodes(client=client, facility=facility)}
    finally:
        client.close()


def test_births_data_and_deaths_from_a_tahu_edge_node(
    mosquitto_url, start_bridge, tahu_edge_node, redis_url, facility, api
):
    start_bridge(mosquitto_url)
    node = tahu_edge_node(mosquitto_url, facility, "edge1", "dev1")
    wait_until(lambda: node.count("birth") >= 1, timeout=30, what="the Tahu births")
    # the births' own values: humidity (node), temperature in degF, spindle pressure; the
    # string "mode" is refused until typed values land
    wait_until(lambda: len(stream_readings(redis_url)) >= 3, timeout=20, what="birth values")
    node.send("data 20")
    wait_until(lambda: len(stream_readings(redis_url)) >= 43, timeout=20, what="20 DDATA")
    got = stream_readings(redis_url)
    machines = {(d, m) for _, d, m, _, _ in got}
    assert machines == {
        ("edge1", "humidity"),
        ("edge1.dev1", "temperature"),
        ("edge1.dev1.spindle", "pressure"),
    }
    temps = sorted(v for _, d, m, _, v in got if m == "temperature")
    assert round(temps[-1], 6) == 100.0  # 212 degF, the birth's value, stored in degC
    assert round(temps[0], 6) == 0.0  # 32 degF, the first DDATA
    assert {f for f, *_ in got} == {facility}

    nodes = _nodes(redis_url, facility)
    device = nodes[f"{facility}/edge1/dev1"]
    assert device["online"]
    assert device["machine"] == "edge1.dev1"
    assert device["signals"]["temperature"]["properties"] == {"engUnit": "degF"}
    assert device["signals"]["mode"]["type"] == "String"

    node.send("ddeath")
    wait_until(
        lambda: _nodes(redis_url, facility)[f"{facility}/edge1/dev1"]["stale"],
        timeout=20,
        what="the device marked stale",
    )
    assert not _nodes(redis_url, facility)[f"{facility}/edge1"]["stale"]
    node.send("stop")
    wait_until(
        lambda: _nodes(redis_url, facility)[f"{facility}/edge1"]["stale"],
        timeout=20,
        what="the node marked stale by its NDEATH",
    )
    # what the dashboard reads, with a read key of that facility only
    answer = api.client.get(
        f"/v1/sparkplug/nodes?facility={facility}",
        headers=api.headers(api.make_key("read", facility)),
    )
    assert answer.status_code == 200
    shown = {n["node"]: n for n in answer.json()["nodes"]}
    assert shown[f"{facility}/edge1/dev1"]["stale"]
    assert shown[f"{facility}/edge1/dev1"]["signals"]["temperature"]["type"] == "Double"
    other = api.client.get(
        f"/v1/sparkplug/nodes?facility={facility}",
        headers=api.headers(api.make_key("read", "plant-01")),
    )
    assert other.status_code == 403


def test_a_host_that_lost_the_births_asks_for_a_rebirth_and_recovers(
    mosquitto_url, start_bridge, tahu_edge_node, redis_url, facility
):
    first = start_bridge(mosquitto_url)
    node = tahu_edge_node(mosquitto_url, facility, "edge1", "dev1")
    wait_until(lambda: len(stream_readings(redis_url)) >= 3, timeout=30, what="birth values")
    first.close()
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("sparkplug:*"):
        client.delete(key)  # the births are gone: a new host knows no alias
    start_bridge(mosquitto_url)
    node.send("data 10")
    wait_until(lambda: node.count("rebirth") >= 1, timeout=30, what="a rebirth request")
    # the 10 DDATA that came before the rebirth were parked, then taken after it
    wait_until(
        lambda: sum(1 for r in stream_readings(redis_url) if r[2] == "temperature") >= 12,
        timeout=30,
        what="the parked data and the rebirth's values",
    )
    temps = [r for r in stream_readings(redis_url) if r[2] == "temperature"]
    # every DDATA value (32..41 degF) is there, beside the first birth's and the rebirth's
    assert {round(v, 6) for *_, v in temps} >= {round(i * 5 / 9, 6) for i in range(10)}
    assert len({r[3] for r in temps}) == 12
    assert _nodes(redis_url, facility)[f"{facility}/edge1/dev1"]["online"]
