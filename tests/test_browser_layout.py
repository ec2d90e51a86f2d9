"""The dashboard's layout and its settings form in a real headless Chromium against a real
`sunrig demo` process: every page at a phone's width and at a desktop's, without sideways
scrolling and with the whole navigation in reach; the settings form's rows, its errors beside
their fields, and edits that survive an expired login. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import json

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser_helpers_layout import (
    DESKTOP,
    PHONE,
    SMALL_PHONE,
    WAIT_S,
    nav_links,
    served_agent,
    set_password,
    wait_drawn,
)
from tests.test_browser import ARTIFACTS, browser, start_demo, stop  # noqa: F401 - a fixture

PASSWORD = "owner password 1"
PAGES = ["/", "/plan", "/history", "/payback", "/settings"]  # at least these, in this order

# What a page looks like to its reader: how wide it is against the window, how tall the header,
# and for each navigation entry where it lies and whether a tap at its centre reaches it.
MEASURE = """
const entries = "header nav a, header .account a, header .account button";
const nav = [...document.querySelectorAll(entries)].map((el) => {
  const r = el.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return { text: el.textContent.trim(), left: r.left, right: r.right, width: r.width,
           height: r.height, reached: el.contains(hit) };
});
return { page_px: document.documentElement.scrollWidth, window_px: window.innerWidth,
         header_px: document.querySelector("header").getBoundingClientRect().height, nav };
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = start_demo(tmp_path_factory.mktemp("layout") / "data",
                   lambda s: s.get("plan") and s.get("gpus"))
    try:
        yield d.url
    finally:
        stop(d)


@pytest.fixture
def window(browser):  # noqa: F811 - the fixture imported above
    def size(width: int, height: int) -> None:
        # the window's frame (if any) takes some pixels: make the page itself this wide
        frame = browser.execute_script("return [window.outerWidth - window.innerWidth, "
                                       "window.outerHeight - window.innerHeight]")
        browser.set_window_size(width + max(0, frame[0]), height + max(0, frame[1]))
    yield size
    size(*DESKTOP)


@pytest.mark.parametrize("width, height", [PHONE, SMALL_PHONE, DESKTOP])
def test_every_page_fits_the_window_with_its_whole_navigation_in_reach(
        demo, browser, window, width, height):  # noqa: F811
    window(width, height)
    browser.get(demo + "/")
    pages = [p for p, _ in nav_links(browser)]
    assert [p for p in pages if p in PAGES] == PAGES
    for path in pages:  # every page the navigation offers
        browser.get(demo + path)
        wait_drawn(browser, path)
        assert [p for p, _ in nav_links(browser)] == pages  # the same on every page
        m = browser.execute_script(MEASURE)
        assert m["window_px"] == width
        assert m["page_px"] <= width, f"{path} scrolls sideways at {width} px: {m['page_px']}"
        assert m["header_px"] <= height * 0.2, f"{path}: the header takes {m['header_px']} px"
        for link in m["nav"]:
            assert link["reached"] and link["left"] >= 0 and link["right"] <= width, (path, link)
            assert link["height"] >= 24, f"{link['text']} is too small a target at {width} px"
        name = "overview" if path == "/" else path.strip("/")
        browser.save_screenshot(str(ARTIFACTS / f"layout-{name}-{width}x{height}.png"))
    browser.get(demo + "/login")  # no password yet: the page that sets it
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    browser.save_screenshot(str(ARTIFACTS / f"layout-login-{width}x{height}.png"))


def test_a_phone_shows_the_money_first_readable_flows_and_the_whole_gpu_table(
        demo, browser, window):  # noqa: F811
    window(*PHONE)
    browser.get(demo + "/")
    wait_drawn(browser, "/")
    top = {i: browser.find_element(By.ID, i).rect["y"] for i in ("revenue", "pv")}
    assert top["revenue"] < top["pv"]  # what today earned leads, above the site's power
    WebDriverWait(browser, WAIT_S).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "#flows .flow-label"))
    heights = browser.execute_script(
        "return [...document.querySelectorAll('#flows .flow-label, #flows .flow-node')]"
        ".map((t) => t.getBoundingClientRect().height)")
    assert min(heights) >= 10, heights  # drawn at a phone's width, still readable text
    browser.execute_script("document.getElementById('flows').scrollIntoView()")
    browser.save_screenshot(str(ARTIFACTS / "layout-overview-flows-390x844.png"))
    table = browser.find_element(By.ID, "gpus")
    assert table.rect["x"] >= 0 and table.rect["x"] + table.rect["width"] <= PHONE[0]
    browser.execute_script("arguments[0].scrollLeft = arguments[0].scrollWidth", table)
    last = table.find_elements(By.CSS_SELECTOR, "thead th")[-1]
    assert last.text == "Temp" and last.is_displayed()
    right = browser.execute_script("return arguments[0].getBoundingClientRect().right", last)
    assert right <= PHONE[0] + 1  # scrolled into the table's box: the last column is in reach


def test_a_new_password_typed_twice_differently_is_not_sent(demo, browser):  # noqa: F811
    browser.delete_all_cookies()
    browser.get(demo + "/login")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "confirm").send_keys(PASSWORD + "!")
    browser.find_element(By.ID, "submit").click()
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, WAIT_S).until(lambda b: error.is_displayed())
    assert error.text == "the two passwords differ"
    session = browser.execute_script("return fetch('/api/session').then((r) => r.json())")
    assert not session["password_set"] and "/login" in browser.current_url


def press(browser, element_id: str) -> None:  # noqa: F811
    """Click a button as a reader does: scrolled to the middle first, clear of the Save bar."""
    button = browser.find_element(By.ID, element_id)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()


def fill_row(row, **values) -> None:
    for cls, value in values.items():
        field = row.find_element(By.CSS_SELECTOR, f".{cls}")
        field.clear()
        field.send_keys(value)


def saved(b) -> dict:
    return b.execute_script("return fetch('/api/settings').then((r) => r.json())")


def test_rows_become_the_settings_json_and_a_save_after_the_login_expired_keeps_the_edits(
        browser, tmp_path):  # noqa: F811
    d = start_demo(tmp_path / "data", lambda s: s.get("plan"))
    try:
        browser.delete_all_cookies()
        set_password(browser, d.url, PASSWORD, "/settings")
        wait_drawn(browser, "/settings")
        before = saved(browser)["local"]["schedule"]
        press(browser, "add-window")
        row = browser.find_elements(By.CSS_SELECTOR, "#local\\.schedule .row")[-1]
        for day in ("sat", "sun"):
            row.find_element(By.CSS_SELECTOR, f'input[value="{day}"]').click()
        browser.execute_script(  # time inputs take keys by locale: set them as a picker would
            "arguments[0].value = '09:30'; arguments[1].value = '00:00'",
            row.find_element(By.CSS_SELECTOR, ".start"), row.find_element(By.CSS_SELECTOR, ".end"))
        fill_row(row, gpus="3")
        press(browser, "add-item")
        item = browser.find_elements(By.CSS_SELECTOR, "#capex\\.items .row")[-1]
        fill_row(item, name="Solar inverter", amount="1850.5")
        browser.execute_script("arguments[0].value = '2025-03-01'",
                               item.find_element(By.CSS_SELECTOR, ".date"))
        browser.delete_all_cookies()  # the session is gone, as after an expiry or a restart
        press(browser, "save")
        link = WebDriverWait(browser, WAIT_S).until(
            lambda b: b.find_elements(By.ID, "login-again"))[0]
        assert "log in again" in link.text
        pending = json.loads(browser.execute_script(
            "return sessionStorage.getItem('sunrig.settings.pending')"))
        assert pending["capex"]["items"][-1] == {"name": "Solar inverter", "amount": 1850.5,
                                                 "date": "2025-03-01"}
        assert saved(browser)["local"]["schedule"] == before  # nothing was sent
        browser.save_screenshot(str(ARTIFACTS / "settings-login-expired.png"))
        link.click()
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "submit").click()
        WebDriverWait(browser, WAIT_S).until(
            lambda b: "Saved" in b.find_element(By.ID, "saved").text)
        assert browser.current_url.endswith("/settings")
        after = saved(browser)
        assert after["local"]["schedule"] == [
            *before, {"days": ["sat", "sun"], "start": "09:30", "end": "24:00", "gpus": 3}]
        assert after["capex"]["items"][-1]["name"] == "Solar inverter"
        assert browser.execute_script(
            "return sessionStorage.getItem('sunrig.settings.pending')") is None
    finally:
        stop(d)


def test_every_error_of_a_change_shows_beside_its_own_field(browser, tmp_path):  # noqa: F811
    with served_agent(tmp_path, PASSWORD) as url:
        browser.delete_all_cookies()
        browser.get(f"{url}/login?next=/settings")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "submit").click()
        wait_drawn(browser, "/settings")
        for field, value in (("local.reserved_gpus", "99"), ("planner.margin_per_gpu_hour", "-1")):
            browser.find_element(By.ID, field).clear()
            browser.find_element(By.ID, field).send_keys(value)
        press(browser, "add-window")
        row = browser.find_elements(By.CSS_SELECTOR, "#local\\.schedule .row")[-1]
        browser.execute_script("arguments[0].value = '18:00'; arguments[1].value = '08:00'",
                               row.find_element(By.CSS_SELECTOR, ".start"),
                               row.find_element(By.CSS_SELECTOR, ".end"))
        press(browser, "save")
        problems = browser.find_element(By.ID, "problems")
        WebDriverWait(browser, WAIT_S).until(lambda b: problems.text)
        assert problems.text.startswith("3 fields need a change")

        def beside(field: str) -> str:
            return browser.find_element(By.CSS_SELECTOR, f'.error[data-for="{field}"]').text
        assert "at most 64" in beside("local.reserved_gpus")
        assert "at least 0" in beside("planner.margin_per_gpu_hour")
        last = len(browser.find_elements(By.CSS_SELECTOR, "#local\\.schedule .row")) - 1
        assert beside(f"local.schedule[{last}]").startswith("end: must be later than start")
        browser.save_screenshot(str(ARTIFACTS / "settings-errors.png"))
        window_errors = browser.find_elements(By.CSS_SELECTOR, "#local\\.schedule .invalid")
        assert len(window_errors) == 1
