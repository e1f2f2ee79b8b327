"""The dashboard with a real plant's size: 5,000 machines in areas and lines, in Chromium.

The first page renders one page of cards, search and filters narrow it on the server, paging
walks it, and long ids stay inside their cards (measured by element widths).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg
import pytest
from fixtures.browser import LiveServer
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from plantstream.model import now_us
from plantstream.model.plant import Area, Line, Machine, MachineType, PlantModel
from plantstream.store import alerts as alert_store
from plantstream.store import assets

pytestmark = pytest.mark.e2e

FACILITY = "plant-01"
MACHINES = 5_000
PAGE = 48  # the dashboard's page size
# as long as an id may be (64 characters), and first in the sorted list
LONG_ID = ("a-very-long-machine-identifier-from-a-tag-export-" + "0" * 20)[:64]


def wait(driver: WebDriver, timeout: float = 15) -> WebDriverWait:
    # the views redraw their rows on every poll: a look that finds an element gone looks again
    return WebDriverWait(
        driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )


def machine_id(i: int) -> str:
    return LONG_ID if i == 0 else f"m-{i:05d}"


@pytest.fixture
def big_plant(live_server: LiveServer, db: psycopg.Connection) -> None:
    """5,000 machines in 2 areas of 5 lines each; a few sending, one alerting."""
    lines = {f"line-{n}": Line(f"line-{n}", f"area-{n % 2}", f"Line {n}") for n in range(10)}
    machines = {}
    for i in range(MACHINES):
        line = lines[f"line-{i % 10}"]
        kind = ("press", "lathe", "robot")[i % 3]
        machines[machine_id(i)] = Machine(machine_id(i), kind, line.area, line.id, f"Machine {i}")
    model = PlantModel(
        facility=FACILITY,
        machine_types={
            k: MachineType(k, signals=("temperature",)) for k in ("press", "lathe", "robot")
        },
        areas={f"area-{n}": Area(f"area-{n}", f"Hall {n}") for n in range(2)},
        lines=lines,
        machines=machines,
    )
    assets.apply_model(conn=db, model=model)
    now = now_us()
    sending = [machine_id(i) for i in range(0, MACHINES, 500)]
    live_server.api.state.hot.update_latest(
        [(FACILITY, device, "temperature", now, 21.0, 0) for device in sending]
    )
    db.execute(
        "INSERT INTO sensors (facility, device, metric, unit) "
        "SELECT %s, id, 'temperature', 'degC' FROM machines WHERE facility = %s",
        (FACILITY, FACILITY),
    )
    alert_store.open_alert(
        conn=db,
        facility=FACILITY,
        device="m-00500",
        metric="temperature",
        sensor_id=None,
        kind="limit",
        severity="critical",
        message="too hot",
        at_us=now,
        details={},
    )


# read in one script: the page re-renders its cards every few seconds (live state)
CARDS = (
    "return [...document.querySelectorAll('#machine-grid .machine-card')]"
    ".map(c => c.dataset.machine)"
)


def cards(driver: WebDriver) -> list[str]:
    return list(driver.execute_script(CARDS))


def click(driver: WebDriver, css: str) -> None:
    """Click ``css``, again if a re-render replaced it under the pointer."""

    def clicked(d: WebDriver) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
        except StaleElementReferenceException:
            return False
        return True

    wait(driver).until(clicked)


def until_total(driver: WebDriver, text: str) -> None:
    wait(driver).until(ec.text_to_be_present_in_element((By.ID, "machine-total"), text))


OVERFLOW = """
return [...document.querySelectorAll('.machine-card')].flatMap((card) => {
  const box = card.getBoundingClientRect();
  const inside = [...card.querySelectorAll('*')].filter((el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && (r.right > box.right + 0.5 || r.left < box.left - 0.5);
  });
  const wider = card.scrollWidth > card.clientWidth;
  return inside.length || wider ? [card.dataset.machine] : [];
});
"""


def test_thousands_of_machines_page_search_filter_and_fit_their_cards(
    browser: WebDriver, live_server: LiveServer, big_plant: None
) -> None:
    browser.get(f"{live_server.url}/#/machines/{FACILITY}")
    field = wait(browser).until(ec.visibility_of_element_located((By.ID, "api-key")))
    field.send_keys(live_server.api.make_key("read", FACILITY))
    browser.find_element(By.ID, "sign-in").click()
    until_total(browser, f"{MACHINES} machines")
    browser.save_screenshot(str(Path(tempfile.gettempdir()) / "dashboard-machines.png"))
    # one page of cards, not 5,000
    assert len(cards(browser)) == PAGE
    assert browser.find_element(By.ID, "page-info").text == f"Page 1 of {-(-MACHINES // PAGE)}"
    # the long id is cut inside its card, and whole in its title
    long_card = browser.find_element(By.CSS_SELECTOR, f"[data-machine='{LONG_ID}']")
    link = long_card.find_element(By.CSS_SELECTOR, ".machine-id")
    assert link.get_attribute("title") == LONG_ID
    assert browser.execute_script(
        "return arguments[0].scrollWidth > arguments[0].clientWidth", link
    )
    assert browser.execute_script(OVERFLOW) == []

    # paging
    first = cards(browser)
    click(browser, "#page-next")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "page-info"), "Page 2 of"))
    wait(browser).until(lambda d: cards(d) and cards(d)[0] != first[0])
    assert len(cards(browser)) == PAGE
    assert not set(cards(browser)) & set(first)

    # search narrows on the server (and starts again at page 1)
    browser.find_element(By.ID, "machine-search").send_keys("m-0499")
    until_total(browser, "10 machines")  # m-04990 .. m-04999
    assert cards(browser) == [f"m-0499{i}" for i in range(10)]
    assert browser.find_element(By.ID, "page-info").text == "Page 1 of 1"

    # the hierarchy: a line of an area, then filters by type and state
    browser.get(f"{live_server.url}/#/machines/{FACILITY}")
    until_total(browser, f"{MACHINES} machines")
    click(browser, "[data-line='line-3'] a")
    until_total(browser, "500 machines")
    assert "line-3" in browser.find_element(By.ID, "crumbs").text
    assert all(int(m[-1]) == 3 for m in cards(browser))
    Select(browser.find_element(By.ID, "filter-type")).select_by_value("press")
    until_total(browser, "167 machines")  # i % 10 == 3 and i % 3 == 0
    browser.get(f"{live_server.url}/#/machines/{FACILITY}")
    until_total(browser, f"{MACHINES} machines")
    Select(browser.find_element(By.ID, "filter-state")).select_by_value("running")
    until_total(browser, "9 machines")  # 10 sending, one of them alerting
    click(browser, "#filter-alerting")
    until_total(browser, "0 machines")  # running and alerting exclude each other
    browser.get(f"{live_server.url}/#/machines/{FACILITY}?alerting=true")
    until_total(browser, "1 machine")
    assert cards(browser) == ["m-00500"]
    browser.get(f"{live_server.url}/#/machines/{FACILITY}?silent=true")
    until_total(browser, f"{MACHINES - 10} machines")

    # the overview no longer draws 5,000 cards: it sends to the machine list
    browser.get(f"{live_server.url}/#/facility/{FACILITY}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "too-many")))
    assert not browser.find_elements(By.CSS_SELECTOR, ".device-card")
    logged = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert [e for e in logged if "Failed to load resource" not in e["message"]] == []
