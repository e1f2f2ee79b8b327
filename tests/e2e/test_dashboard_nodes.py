"""The dashboard's edge-node view in Chromium: Sparkplug B nodes and devices, stale after death.

A real bridge takes births and deaths from an edge node through Mosquitto; the page at
``#/nodes/{facility}`` shows each node and device, marks the dead ones stale, and follows a
node's death onto all its devices.
"""

from __future__ import annotations

import time

import pytest
from fixtures.browser import LiveServer
from fixtures.mqtt import QosEdgeNode
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from plantstream.mqtt.sparkplug import edge
from plantstream.mqtt.sparkplug.sparkplug_b_pb2 import Payload

pytestmark = pytest.mark.e2e


def wait(driver: WebDriver, timeout: float = 30) -> WebDriverWait:
    # the summary line is redrawn too: a look that finds it gone looks again
    return WebDriverWait(
        driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
    )


# the view redraws its rows on every poll: each look reads the table in one script, never
# an element found by an earlier call (it may be gone)
_ROWS = """return [...document.querySelectorAll('#nodes-table .node-row')].map(
  (r) => [r.dataset.node, r.dataset.stale, [...r.cells].map((c) => c.innerText)]);"""


def _table(driver: WebDriver) -> dict[str, tuple[str, list[str]]]:
    return {node: (stale, cells) for node, stale, cells in driver.execute_script(_ROWS)}


def _rows(driver: WebDriver) -> dict[str, str]:
    return {node: stale for node, (stale, _) in _table(driver).items()}


def test_edge_nodes_view_marks_dead_devices_and_nodes_stale(
    browser: WebDriver, live_server: LiveServer, mosquitto_url, start_bridge, facility
) -> None:
    start_bridge(mosquitto_url)
    node = QosEdgeNode(mosquitto_url, group=facility, edge="e1", device="d1", metrics=3)
    try:
        now_ms = int(time.time() * 1000)
        node.birth(now_ms)
        node.data(now_ms + 1)
        browser.get(f"{live_server.url}/#/nodes/{facility}")
        field = wait(browser).until(ec.visibility_of_element_located((By.ID, "api-key")))
        field.send_keys(live_server.api.make_key("read", facility))
        browser.find_element(By.ID, "sign-in").click()
        expected = {f"{facility}/e1": "false", f"{facility}/e1/d1": "false"}
        wait(browser).until(lambda d: _rows(d) == expected)
        device = f"{facility}/e1/d1"
        cells = _table(browser)[device][1]
        assert cells[1] == "online"
        assert cells[2] == "e1.d1"  # its machine, linked to the machine page
        assert "m00" in cells[5]  # the signals its birth defined

        death = Payload(timestamp=now_ms + 2, seq=node.seq + 1)
        node.client.publish(node.topic("DDEATH"), death.SerializeToString(), qos=1)
        expected[f"{facility}/e1/d1"] = "true"
        wait(browser).until(lambda d: _rows(d) == expected)
        assert _table(browser)[device][1][1] == "stale"  # its badge
        wait(browser).until(lambda d: "1 stale" in d.find_element(By.ID, "nodes-summary").text)

        will = edge.node_death(bdseq=0, timestamp_ms=now_ms + 3)
        node.client.publish(node.topic("NDEATH"), will, qos=1)
        wait(browser).until(lambda d: set(_rows(d).values()) == {"true"})
        wait(browser).until(lambda d: "2 stale" in d.find_element(By.ID, "nodes-summary").text)
        logged = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not logged, logged
    finally:
        node.close()
