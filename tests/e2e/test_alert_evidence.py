"""An alert's evidence drawn on the dashboard: the readings around it, the window judged,
the baseline and the bound, in a real headless Chromium against the real API."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from fixtures.browser import LiveServer
from fixtures.pipeline import Produced, drain, produce, simulated_readings
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from plantstream.processor import Processor

pytestmark = pytest.mark.e2e

FACILITY = "plant-01"
SCREENSHOTS = Path(os.environ.get("PLANTSTREAM_SCREENSHOT_DIR", tempfile.gettempdir()))


def test_an_alerts_evidence_is_drawn_on_a_chart(
    browser: WebDriver,
    live_server: LiveServer,
    make_processor: Callable[..., Processor],
    database_url: str,
    db: psycopg.Connection,
) -> None:
    produced = Produced({})
    stream = live_server.api.stream
    produce(stream, simulated_readings(seconds=180, facilities=1, machines=1), produced)
    drain(make_processor(database_url, stream, live_server.api.state.redis))
    ours = sorted(k for k in produced.readings if k[0] == FACILITY)
    _, device, metric, _ = ours[0]
    times = sorted(ts for f, d, m, ts in ours if (d, m) == (device, metric))
    values = [produced.readings[(FACILITY, device, metric, ts)] for ts in times]
    window = (times[-70], times[-60])  # ten readings judged, a minute before the newest
    baseline = sorted(values)[len(values) // 2]
    details = {
        "detector": "zscore",
        "window": {"from_us": window[0], "to_us": window[1], "readings": 11, "median": baseline},
        "baseline": baseline,
        "sigma": 0.5,
        "statistic": 6.2,
        "threshold": 5.0,
    }
    (alert_id,) = db.execute(
        "INSERT INTO alerts (facility, device, metric, detector, severity, state, message, "
        "opened_at, last_seen_at, details) VALUES (%s, %s, %s, 'level_shift', 'warning', "
        "'open', 'level 6.2 sigma off', to_timestamp(%s / 1e6), to_timestamp(%s / 1e6), %s) "
        "RETURNING id",
        (FACILITY, device, metric, window[1], times[-1], json.dumps(details)),
    ).fetchone()  # type: ignore[misc]

    browser.get(f"{live_server.url}/#/alerts/{FACILITY}")
    wait = WebDriverWait(browser, 10, poll_frequency=0.1)
    field = wait.until(ec.visibility_of_element_located((By.ID, "api-key")))
    field.send_keys(live_server.api.make_key("read"))
    browser.find_element(By.ID, "sign-in").click()
    toggle = f"tr[data-alert-id='{alert_id}'] button.evidence-toggle"
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, toggle))).click()
    panel = f".evidence[data-alert-id='{alert_id}']"
    wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, panel).get_attribute("data-drawn") == "true"
    )
    drawn = browser.find_element(By.CSS_SELECTOR, panel)
    # every reading of the sensor is in the chart's range (raw: three minutes of 1 Hz)
    assert drawn.get_attribute("data-step") == "raw"
    assert drawn.get_attribute("data-points") == str(len(times))
    canvas = drawn.find_element(By.CSS_SELECTOR, ".uplot canvas")
    assert canvas.size["width"] >= 300
    facts = drawn.find_element(By.CSS_SELECTOR, ".evidence-facts").text
    for fact in ("detector zscore", "baseline", "sigma 0.5", "threshold 5"):
        assert fact in facts
    legend = drawn.find_element(By.CSS_SELECTOR, ".u-legend").get_attribute("textContent") or ""
    for line in ("baseline", "upper bound", "lower bound"):
        assert line in legend
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / "dashboard-alert-evidence.png"))
    # the panel closes again
    browser.find_element(By.CSS_SELECTOR, toggle).click()
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, panel))
