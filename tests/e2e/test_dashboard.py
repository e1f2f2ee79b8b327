"""The dashboard in a real headless Chromium against the real API, PostgreSQL and Redis."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fixtures.browser import LiveServer
from fixtures.pipeline import Produced, drain, produce, simulated_readings
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from plantstream.processor import Processor

pytestmark = pytest.mark.e2e

FACILITY = "plant-01"
SCREENSHOTS = Path(os.environ.get("PLANTSTREAM_SCREENSHOT_DIR", tempfile.gettempdir()))


def wait(driver: WebDriver, timeout: float = 10) -> WebDriverWait:
    # the views redraw their rows on every poll: a look that finds an element gone looks again
    return WebDriverWait(
        driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )


def screenshot(driver: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(SCREENSHOTS / f"dashboard-{name}.png"))


def assert_no_script_errors(driver: WebDriver) -> None:
    """No JavaScript error and no Content-Security-Policy violation was logged."""
    logged = driver.get_log("browser")
    errors = [
        entry["message"]
        for entry in logged
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]
    assert not errors, errors


def sign_in(driver: WebDriver, key: str) -> None:
    field = wait(driver).until(ec.visibility_of_element_located((By.ID, "api-key")))
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "sign-in").click()


def open_dashboard(driver: WebDriver, server: LiveServer, route: str = "") -> None:
    driver.get(f"{server.url}/{route}")
    wait(driver).until(ec.title_is("plantstream"))


def latest_per_sensor(produced: Produced) -> dict[tuple[str, str], float]:
    newest: dict[tuple[str, str], tuple[int, float]] = {}
    for (facility, device, metric, ts_us), value in produced.readings.items():
        if facility == FACILITY and ts_us > newest.get((device, metric), (-1, 0.0))[0]:
            newest[(device, metric)] = (ts_us, value)
    return {sensor: value for sensor, (_, value) in newest.items()}


@pytest.fixture
def plant(
    live_server: LiveServer, make_processor: Callable[..., Processor], database_url: str
) -> Produced:
    """Ten minutes of two simulated facilities with four machines each, processed and stored."""
    produced = Produced({})
    stream = live_server.api.stream
    produce(stream, simulated_readings(seconds=600, facilities=2, machines=4), produced)
    drain(make_processor(database_url, stream, live_server.api.state.redis))
    return produced


def insert_alert(db: psycopg.Connection, device: str, metric: str, **values: Any) -> int:
    row = {
        "detector": "limit",
        "severity": "critical",
        "state": "open",
        "message": f"{metric} above its limit",
        **values,
    }
    (alert_id,) = db.execute(
        "INSERT INTO alerts (facility, device, metric, detector, severity, state, message, "
        "opened_at, last_seen_at, resolved_at) VALUES (%s, %s, %s, %s, %s, %s, %s, "
        "now() - interval '3 minutes', now() - interval '20 seconds', "
        "CASE WHEN %s = 'resolved' THEN now() END) RETURNING id",
        (
            FACILITY,
            device,
            metric,
            row["detector"],
            row["severity"],
            row["state"],
            row["message"],
            row["state"],
        ),
    ).fetchone()  # type: ignore[misc]
    return int(alert_id)


def test_sign_in_rejects_bad_keys_and_sign_out_forgets_the_key(
    browser: WebDriver, live_server: LiveServer, plant: Produced
) -> None:
    open_dashboard(browser, live_server)
    sign_in(browser, "ps_not-a-real-key")
    error = wait(browser).until(ec.visibility_of_element_located((By.ID, "login-error")))
    assert "not accepted (401)" in error.text
    assert browser.execute_script("return sessionStorage.length") == 0

    sign_in(browser, live_server.api.make_key("ingest"))
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "login-error"), "(403)"))
    assert "read or admin key" in browser.find_element(By.ID, "login-error").text

    key = live_server.api.make_key("read")
    sign_in(browser, key)
    wait(browser).until(ec.url_contains(f"#/facility/{FACILITY}"))
    wait(browser).until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".device-card")))
    assert browser.execute_script("return sessionStorage.getItem('plantstream.key')") == key

    browser.find_element(By.ID, "logout").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "api-key")))
    assert browser.execute_script("return sessionStorage.length") == 0
    browser.get(f"{live_server.url}/#/facility/{FACILITY}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "api-key")))
    assert_no_script_errors(browser)


def test_overview_shows_each_machine_with_its_latest_values_and_open_alerts(
    browser: WebDriver, live_server: LiveServer, plant: Produced, db: psycopg.Connection
) -> None:
    insert_alert(db, "line-1-cnc-01", "temperature")
    insert_alert(db, "line-1-cnc-01", "vibration_rms", severity="warning", detector="zscore")
    expected = latest_per_sensor(plant)
    open_dashboard(browser, live_server)
    sign_in(browser, live_server.api.make_key("admin", None))
    # an admin key sees both facilities and picks one
    card = wait(browser).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, f"[data-facility='{FACILITY}']"))
    )
    card.click()
    wait(browser).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".device-card .metric-row")) == len(expected)
    )

    shown = {
        (row.get_attribute("data-device"), metric.get_attribute("data-metric")): float(
            metric.get_attribute("data-value") or "nan"
        )
        for row in browser.find_elements(By.CSS_SELECTOR, ".device-card")
        for metric in row.find_elements(By.CSS_SELECTOR, ".metric-row")
    }
    assert shown == pytest.approx(expected)
    lines = [s.get_attribute("data-line") for s in browser.find_elements(By.CSS_SELECTOR, ".line")]
    assert lines == ["line-1", "line-2"]
    cnc = browser.find_element(By.CSS_SELECTOR, "[data-device='line-1-cnc-01']")
    assert cnc.find_element(By.CSS_SELECTOR, ".alert-count").text == "2 open alerts"
    temperature = cnc.find_element(By.CSS_SELECTOR, "[data-metric='temperature']")
    assert "°C" in temperature.text
    assert temperature.get_attribute("data-stale") == "false"
    screenshot(browser, "overview")
    assert_no_script_errors(browser)


def test_machine_page_draws_a_live_chart_per_metric(
    browser: WebDriver, live_server: LiveServer, plant: Produced
) -> None:
    device = "line-1-cnc-01"
    per_metric: dict[str, int] = {}
    minutes: dict[str, set[int]] = {}
    for facility, name, metric, ts_us in plant.readings:
        if (facility, name) == (FACILITY, device):
            per_metric[metric] = per_metric.get(metric, 0) + 1
            minutes.setdefault(metric, set()).add(ts_us // 60_000_000)
    if "production_count" in per_metric:  # a counter: its increase per 1-minute bucket
        per_metric["production_count"] = len(minutes["production_count"])
    # a deep link survives signing in
    open_dashboard(browser, live_server, f"#/facility/{FACILITY}/device/{device}")
    sign_in(browser, live_server.api.make_key("read"))
    wait(browser).until(
        lambda d: (
            {
                c.get_attribute("data-metric"): int(c.get_attribute("data-points") or 0)
                for c in d.find_elements(By.CSS_SELECTOR, ".chart-card")
            }
            == per_metric
        )
    )
    for chart in browser.find_elements(By.CSS_SELECTOR, ".chart-card"):
        # a counter is drawn as its increase per bucket: bucketed even over 15 minutes
        counter = chart.get_attribute("data-metric") == "production_count"
        assert chart.get_attribute("data-step") == ("1m" if counter else "raw")
        canvas = chart.find_element(By.CSS_SELECTOR, ".uplot canvas")
        assert canvas.size["width"] > 200
        assert canvas.size["height"] > 100
    assert browser.find_element(By.ID, "machine-title").text.startswith(device)
    screenshot(browser, "machine")

    browser.find_element(By.CSS_SELECTOR, "[data-range='6h']").click()
    wait(browser).until(ec.url_contains("range=6h"))
    wait(browser).until(
        lambda d: (
            {c.get_attribute("data-step") for c in d.find_elements(By.CSS_SELECTOR, ".chart-card")}
            == {"1m"}
        )
    )
    buckets = {
        c.get_attribute("data-metric"): int(c.get_attribute("data-points") or 0)
        for c in browser.find_elements(By.CSS_SELECTOR, ".chart-card")
    }
    assert buckets == {metric: len(m) for metric, m in minutes.items()}
    assert_no_script_errors(browser)


def test_acknowledging_an_alert_updates_the_row_and_the_database(
    browser: WebDriver, live_server: LiveServer, plant: Produced, db: psycopg.Connection
) -> None:
    critical = insert_alert(db, "line-1-cnc-01", "temperature")
    insert_alert(db, "line-2-press-02", "pressure", severity="warning", detector="zscore")
    insert_alert(db, "line-1-pump-03", "flow_rate", severity="info", state="resolved")
    open_dashboard(browser, live_server, f"#/alerts/{FACILITY}")
    sign_in(browser, live_server.api.make_key("read"))
    row = f"tr[data-alert-id='{critical}']"
    wait(browser).until(ec.element_to_be_clickable((By.CSS_SELECTOR, f"{row} button.ack"))).click()
    wait(browser).until(
        ec.text_to_be_present_in_element_attribute(
            (By.CSS_SELECTOR, row), "data-state", "acknowledged"
        )
    )
    assert browser.find_element(By.CSS_SELECTOR, f"{row} .state").text == "acknowledged"
    assert not browser.find_elements(By.CSS_SELECTOR, f"{row} button.ack")
    state, by = db.execute(
        "SELECT state, acknowledged_by FROM alerts WHERE id = %s", (critical,)
    ).fetchone()  # type: ignore[misc]
    assert state == "acknowledged"
    assert by
    # the default "active" view lists open and acknowledged alerts, not resolved ones
    states = [
        r.get_attribute("data-state") for r in browser.find_elements(By.CSS_SELECTOR, ".alert-row")
    ]
    assert sorted(states) == ["acknowledged", "open"]
    screenshot(browser, "alerts")

    browser.find_element(By.CSS_SELECTOR, "[data-filter='resolved']").click()
    wait(browser).until(
        lambda d: (
            [r.get_attribute("data-state") for r in d.find_elements(By.CSS_SELECTOR, ".alert-row")]
            == ["resolved"]
        )
    )
    assert_no_script_errors(browser)
