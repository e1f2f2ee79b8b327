"""``/docs`` in a real headless Chromium: Swagger UI renders every operation under the app's
own Content-Security-Policy, with nothing loaded from outside."""

from __future__ import annotations

import pytest
from fixtures.browser import LiveServer
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.e2e


def test_docs_render_the_operations(browser: WebDriver, live_server: LiveServer) -> None:
    browser.get_log("browser")  # what earlier pages logged is not ours
    browser.get(f"{live_server.url}/docs")
    WebDriverWait(browser, 20, poll_frequency=0.1).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock-summary-path"))
    )
    paths = {
        element.get_attribute("data-path")
        for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    operations = live_server.api.client.get("/openapi.json").json()["paths"]
    assert paths == set(operations)
    title = browser.find_element(By.CSS_SELECTOR, ".info .title").text
    assert title.startswith("plantstream")
    logged = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert logged == []  # no CSP violation, no failed load, no script error
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded
    assert all(url.startswith(live_server.url) for url in loaded), loaded
