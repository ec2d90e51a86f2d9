"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver, installed by
`make test`), driven by Selenium against a real `sunrig demo` process (for the shared pages, one
with a week rather than a year to simulate for the payback page). Screenshots of each page go to
tests/artifacts/ for a person to look at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser_helpers import ARTIFACTS, WAIT_S, chromium
from tests.demo_process import Demo
from tests.short_year_demo import SHORT_YEAR_DAYS
from webui.auth import FREE_FAILURES


def start_demo(data_dir: Path, ready, **kind) -> Demo:
    demo = Demo(data_dir, "--speed", "600", **kind)
    try:
        demo.wait_for(ready, "the demo serving")
    except BaseException:
        demo.stop()
        raise
    return demo


def stop(demo: Demo) -> None:
    assert demo.stop() == 0, demo.tail()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = start_demo(tmp_path_factory.mktemp("demo") / "data",
                   lambda s: s.get("plan") and s.get("gpus"), short_year=True)
    try:
        yield d.url
    finally:
        stop(d)


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def test_overview_shows_the_rig(demo, browser):
    browser.get(demo + "/")
    WebDriverWait(browser, WAIT_S).until(
        lambda b: b.find_element(By.ID, "rig").text not in ("", "–"))
    assert "W" in browser.find_element(By.ID, "rig").text
    WebDriverWait(browser, WAIT_S).until(  # the rig's GPUs draw power: its energy is booked
        lambda b: b.find_elements(By.CSS_SELECTOR, "#costs tbody tr"))
    # the rig always draws power, so the flow diagram has a band into it from some source
    bands = browser.find_elements(By.CSS_SELECTOR, '#flows path.flow[data-to="rig"]')
    assert bands and all(b.get_attribute("data-from") in ("pv", "battery", "grid")
                         for b in bands)
    browser.save_screenshot(str(ARTIFACTS / "overview.png"))


def test_plan_page_draws_its_charts_with_data(demo, browser):
    browser.get(demo + "/plan")
    WebDriverWait(browser, WAIT_S).until(
        lambda b: b.execute_script("return document.body.dataset.drawn") == "yes")
    canvases = browser.find_elements(By.CSS_SELECTOR, ".chart canvas")
    assert len(canvases) == 4 and all(c.size["width"] > 300 for c in canvases)
    legend = browser.find_element(By.ID, "offer-chart").text
    assert "sim GPUs" in legend and "sim floor" in legend
    browser.save_screenshot(str(ARTIFACTS / "plan.png"))


def open_charts(browser, url: str) -> None:
    """Open a page and wait until its script says the charts are drawn."""
    browser.get(url)
    WebDriverWait(browser, WAIT_S).until(
        lambda b: b.execute_script("return document.body.dataset.drawn") == "yes")
    assert browser.find_elements(By.CSS_SELECTOR, ".chart canvas")


def test_history_page_draws(demo, browser):
    open_charts(browser, f"{demo}/history")
    rows = browser.find_elements(By.CSS_SELECTOR, "#days tbody tr")
    assert rows and "EUR" in rows[0].text  # today's money, as numbers too
    browser.save_screenshot(str(ARTIFACTS / "history.png"))


def test_payback_page_draws_and_projects_from_the_simulated_year(demo, browser):
    open_charts(browser, f"{demo}/payback")
    # the demo simulates its period in the background and the page picks the answer up by itself
    card = browser.find_element(By.ID, "projected-sim")
    WebDriverWait(browser, WAIT_S, poll_frequency=2).until(
        lambda b: re.fullmatch(r"\d{4}-\d\d-\d\d", card.text))
    assert (f"a day over {SHORT_YEAR_DAYS} days from 2024-01-01"
            in browser.find_element(By.ID, "sim-detail").text)
    browser.save_screenshot(str(ARTIFACTS / "payback.png"))


def test_a_setting_changed_in_the_page_persists_across_a_restart(browser, tmp_path):
    data = tmp_path / "demo"
    d = start_demo(data, lambda s: s.get("plan"))
    try:
        url = d.url
        browser.delete_all_cookies()
        browser.get(url + "/login?next=/settings")
        browser.find_element(By.ID, "password").send_keys("owner password 1")
        browser.find_element(By.ID, "confirm").send_keys("owner password 1")  # setting it: twice
        browser.find_element(By.ID, "submit").click()
        WebDriverWait(browser, WAIT_S).until(
            lambda b: b.execute_script("return document.body.dataset.loaded") == "yes")
        field = browser.find_element(By.ID, "local.reserved_gpus")
        field.clear()
        field.send_keys("99")
        browser.find_element(By.ID, "save").click()
        error = browser.find_element(By.CSS_SELECTOR, '.error[data-for="local.reserved_gpus"]')
        WebDriverWait(browser, WAIT_S).until(lambda b: error.text)
        assert "at most 64" in error.text  # beside its field
        field.clear()
        field.send_keys("3")
        browser.find_element(By.ID, "save").click()
        WebDriverWait(browser, WAIT_S).until(
            lambda b: "Saved" in b.find_element(By.ID, "saved").text)
        browser.save_screenshot(str(ARTIFACTS / "settings.png"))
    finally:
        stop(d)
    d = start_demo(data, lambda s: s.get("plan"))
    try:
        browser.get(f"{d.url}/settings")
        WebDriverWait(browser, WAIT_S).until(
            lambda b: b.execute_script("return document.body.dataset.loaded") == "yes")
        assert browser.find_element(By.ID, "local.reserved_gpus").get_attribute("value") == "3"
    finally:
        stop(d)


def log_in(browser, url: str, password: str) -> None:
    browser.get(url + "/login")
    browser.find_element(By.ID, "password").send_keys(password)
    for confirm in browser.find_elements(By.ID, "confirm"):  # the first login sets it: twice
        confirm.send_keys(password)
    browser.find_element(By.ID, "submit").click()


def logged_in(browser) -> dict:
    """The session once the login page has sent the browser on; fails unless logged in."""
    WebDriverWait(browser, WAIT_S).until(lambda b: "/login" not in b.current_url)
    session = browser.execute_script("return fetch('/api/session').then(r => r.json())")
    assert session["logged_in"], session
    return session


def test_setting_the_password_logging_in_and_wrong_guesses_never_lock_the_owner_out(demo,
                                                                                  browser):
    browser.get(demo + "/login")
    assert "Set password" in browser.find_element(By.ID, "submit").text  # none set yet
    log_in(browser, demo, "correct horse battery")  # so this one sets it
    assert logged_in(browser)["password_set"]
    browser.delete_all_cookies()
    for attempt in range(FREE_FAILURES + 1):  # one more than the free ones: slowed from here
        log_in(browser, demo, f"wrong guess {attempt}")
        error = WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.ID, "error"))
        assert error[0].text == "wrong password"
    browser.save_screenshot(str(ARTIFACTS / "login-wrong.png"))
    log_in(browser, demo, "correct horse battery")  # held for its turn, then let in
    logged_in(browser)
