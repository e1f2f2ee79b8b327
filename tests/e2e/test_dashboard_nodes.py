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
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from plantstream.mqtt.sparkplug import edge
from plantstream.mqtt.sparkplug.sparkplug_b_pb2 import Payload

pytestmark = pytest.mark.e2e


def wait(driver: WebDriver, timeout: float = 20) -> WebDriverWait:
    return WebDriverWait(driver, timeout, poll_frequency=0.2)


def _rows(driver: WebDriver) -> dict[str, str]:
    return {
        r.get_attribute("data-node") or "": r.get_attribute("data-stale") or ""
        for r in driver.find_elements(By.CSS_SELECTOR, "#nodes-table .node-row")
    }


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
        device_row = f"tr[data-node='{facility}/e1/d1']"
        cells = browser.find_elements(By.CSS_SELECTOR, f"{device_row} td")
        assert cells[2].text == "e1.d1"  # its machine, linked to the machine page
        assert "m00" in cells[5].text  # the signals its birth defined

        death = Payload(timestamp=now_ms + 2, seq=node.seq + 1)
        node.client.publish(node.topic("DDEATH"), death.SerializeToString(), qos=1)
        expected[f"{facility}/e1/d1"] = "true"
        wait(browser).until(lambda d: _rows(d) == expected)
        badge = browser.find_element(By.CSS_SELECTOR, f"{device_row} .node-state .badge")
        assert badge.text == "stale"
        assert "1 stale" in browser.find_element(By.ID, "nodes-summary").text

        will = edge.node_death(bdseq=0, timestamp_ms=now_ms + 3)
        node.client.publish(node.topic("NDEATH"), will, qos=1)
        wait(browser).until(lambda d: set(_rows(d).values()) == {"true"})
        assert "2 stale" in browser.find_element(By.ID, "nodes-summary").text
        logged = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not logged, logged
    finally:
        node.close()
