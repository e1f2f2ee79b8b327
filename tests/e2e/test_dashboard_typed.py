"""Typed signals drawn in a real Chromium (issue 12's "drawn"): a state as a timeline band
with the time in each state, a boolean as steps, a wrapping counter as its increase per
bucket, a gauge in a unit of the plant's own as a line; sent over HTTP, stored by the
processor on real PostgreSQL and Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fixtures.browser import LiveServer
from fixtures.pipeline import drain
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from test_dashboard import assert_no_script_errors, open_dashboard, screenshot, sign_in, wait

from plantstream.processor import Processor
from plantstream.store.catalog import StoreCatalog

MODEL = """\
facility: plant-01
machine_types:
  - name: press
    signals:
      - {name: running, type: bool}
      - {name: state, type: state, states: [idle, run, fault]}
      - {name: parts, type: int64, kind: counter, wrap: uint16}
      - {name: stroke_rate, unit: strokes/min}
machines:
  - {id: press-1, type: press}
"""


def _r(metric: str, value: object, ts: datetime) -> dict[str, Any]:
    iso = ts.isoformat().replace("+00:00", "Z")
    return {"device": "press-1", "metric": metric, "ts": iso, "value": value}


def test_the_machine_page_draws_each_kind_its_own_way(
    browser: WebDriver,
    live_server: LiveServer,
    make_processor: Callable[..., Processor],
    database_url: str,
) -> None:
    api = live_server.api
    admin = api.make_key("admin", None)
    put = api.client.put(
        "/v1/assets/model?facility=plant-01",
        content=MODEL,
        headers={**api.headers(admin), "Content-Type": "application/yaml"},
    )
    assert put.status_code == 200, put.text
    now = datetime.now(UTC).replace(microsecond=0)
    m = timedelta(minutes=1)
    readings = [
        _r("state", "idle", now - 10 * m),
        _r("state", "run", now - 8 * m),
        _r("state", "fault", now - 3 * m),
        _r("running", True, now - 10 * m),
        _r("running", False, now - 4 * m),
        _r("parts", 65530, now - 10 * m),
        _r("parts", 65535, now - 9 * m),
        _r("parts", 4, now - 7 * m),  # wrapped at 2**16
        _r("parts", 10, now - 2 * m),
        _r("stroke_rate", 12.0, now - 10 * m),
        _r("stroke_rate", 14.0, now - 5 * m),
    ]
    sent = api.client.post(
        "/v1/readings",
        json={"facility": "plant-01", "readings": readings},
        headers=api.headers(api.make_key("ingest")),
    )
    assert sent.json() == {"accepted": len(readings), "rejected": []}
    processor = make_processor(
        database_url,
        api.stream,
        api.state.redis,
        catalog=StoreCatalog(api.state.pool, miss_refresh=0.0),
    )
    drain(processor)

    open_dashboard(browser, live_server, "#/facility/plant-01/device/press-1")
    sign_in(browser, api.make_key("read"))

    def card(metric: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, f".chart-card[data-metric='{metric}']")

    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".chart-card")) == 4)
    modes = {
        c.get_attribute("data-metric"): c.get_attribute("data-mode")
        for c in browser.find_elements(By.CSS_SELECTOR, ".chart-card")
    }
    assert modes == {
        "state": "band",
        "running": "steps",
        "parts": "increase",
        "stroke_rate": "line",
    }
    # the band: time in each state over the window (fault holds until now)
    band = card("state").find_element(By.CSS_SELECTOR, ".plot")
    wait(browser).until(lambda d: band.get_attribute("data-states"))
    states = json.loads(band.get_attribute("data-states") or "{}")
    assert states["idle"] == 120
    assert states["run"] == 300
    assert 180 <= states["fault"] <= 240  # grows with the clock until the page is read
    legend = [li.get_attribute("data-state") for li in band.find_elements(By.CSS_SELECTOR, "li")]
    assert legend == ["fault", "idle", "run"]
    assert band.find_element(By.CSS_SELECTOR, "canvas.state-band").size["width"] > 200
    assert card("state").find_element(By.CSS_SELECTOR, ".chart-value strong").text == "fault"
    # the counter: bucketed even over 15 minutes, its increase summed across the wrap
    parts = card("parts")
    wait(browser).until(
        lambda d: (
            parts.find_element(By.CSS_SELECTOR, ".plot").get_attribute("data-increase") is not None
        )
    )
    assert parts.get_attribute("data-step") == "1m"
    assert float(parts.find_element(By.CSS_SELECTOR, ".plot").get_attribute("data-increase")) == 16
    # the boolean: raw steps, its value shown as it is
    running = card("running")
    assert running.get_attribute("data-step") == "raw"
    assert running.get_attribute("data-points") == "2"
    assert running.find_element(By.CSS_SELECTOR, ".chart-value strong").text == "false"
    assert running.find_element(By.CSS_SELECTOR, ".uplot canvas").size["height"] > 100
    assert "strokes/min" in card("stroke_rate").find_element(By.CSS_SELECTOR, ".chart-value").text
    screenshot(browser, "machine-typed")

    # over 6 hours the others are bucketed; the band stays on the changes themselves (a
    # bucket holds a state's time only where a reading fell, not where it was held)
    browser.find_element(By.CSS_SELECTOR, "[data-range='6h']").click()
    wait(browser).until(lambda d: card("parts").get_attribute("data-step") == "1m")
    assert card("state").get_attribute("data-step") == "raw"
    band = card("state").find_element(By.CSS_SELECTOR, ".plot")
    wait(browser).until(
        lambda d: json.loads(band.get_attribute("data-states") or "{}").get("run") == 300
    )
    bucketed = json.loads(band.get_attribute("data-states") or "{}")
    assert bucketed["idle"] == 120
    assert 180 <= bucketed["fault"] <= 300
    increase = card("parts").find_element(By.CSS_SELECTOR, ".plot").get_attribute("data-increase")
    assert float(increase or 0) == 16
    assert card("running").get_attribute("data-step") == "1m"
    assert_no_script_errors(browser)
