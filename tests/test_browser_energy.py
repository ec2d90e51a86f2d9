"""The owner's energy story in a real headless Chromium against a real `sunrig demo` process:
History's stacked source bars against /api/history and the ledger in the demo's own store, the
Overview's energy today by source, the payback page of a young store, and every page at a desktop's
and a phone's size, with screenshots into tests/artifacts/ for a person to look at."""

from __future__ import annotations

import re
import sqlite3
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser_helpers import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    WAIT_S,
    chromium,
    full_page_screenshot,
    open_drawn,
    viewport,
)
from tests.demo_process import Demo

PAGES = ("/", "/plan", "/history", "/payback")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = tmp_path_factory.mktemp("energy") / "data"
    d = Demo(data, "--speed", "600", short_year=True)
    try:
        d.wait_for(lambda s: s.get("plan") and s["today"]["energy_kwh"] > 0, "energy booked")
        d.data = data
        yield d
    finally:
        assert d.stop() == 0, d.tail()


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def ledger_kwh(demo: Demo, first: str, last: str) -> dict[str, dict[str, float]]:
    """The rig's kWh per day and source as the demo's own ledger holds them (read-only)."""
    db = sqlite3.connect(f"file:{demo.data / 'sunrig-demo.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT day, source, sum(energy_wh) FROM ledger_daily WHERE category "
                          "= 'energy' AND day BETWEEN ? AND ? GROUP BY day, source",
                          [first, last]).fetchall()
    finally:
        db.close()
    out: dict[str, dict[str, float]] = {}
    for day, source, wh in rows:
        out.setdefault(day, {})[source] = wh / 1000.0
    return out


def drawn(browser, chart: str) -> list[list[float | None]]:
    return browser.execute_script(f"return sunrigCharts['{chart}'].data.map(a => Array.from(a))")


def a_day_after(first: str):
    """Whether a status is an hour or more into a day after `first`: by then the last
    samples of the day before are booked, and its ledger rows no longer change."""
    def ok(status: dict) -> bool:
        local = datetime.fromisoformat(status["ts"]).astimezone(ZoneInfo(status["timezone"]))
        return status["today"]["day"] > first and local.hour >= 1
    return ok


def test_history_source_bars_add_up_to_the_rigs_energy_in_the_ledger(demo, browser):
    first = demo.status()["today"]["day"]
    # past days only, which no longer change: the drawn bars, the API and the ledger must agree
    s = demo.wait_for(a_day_after(first), "a whole day booked")
    last = (date.fromisoformat(s["today"]["day"]) - timedelta(days=1)).isoformat()
    start = (date.fromisoformat(last) - timedelta(days=6)).isoformat()
    viewport(browser, DESKTOP)
    open_drawn(browser, f"{demo.url}/history?from={start}&to={last}")
    doc = browser.execute_script("return sunrigCharts.history")
    data = drawn(browser, "kwh-chart")
    assert doc["step"] == "day" and len(doc["bars"]) == 7 == len(data[0])
    ledger = ledger_kwh(demo, start, last)
    assert ledger.get(first), "the demo booked nothing on its first day"
    # drawn top first: the first series is every source stacked, each next one a source fewer
    sources = [s for s in ("pv", "battery", "grid", "unpriced")
               if any(s in b["kwh_by_source"] for b in doc["bars"])][::-1]
    for i, bar in enumerate(doc["bars"]):
        booked = ledger.get(bar["label"], {})
        assert data[1][i] == pytest.approx(sum(booked.values()), abs=0.01)
        for k, source in enumerate(sources):
            below = data[k + 2][i] if k + 2 < len(data) else 0.0
            assert data[k + 1][i] - below == pytest.approx(booked.get(source, 0.0), abs=0.01)
            assert bar["kwh_by_source"].get(source, 0.0) == pytest.approx(
                booked.get(source, 0.0), abs=0.01)
    scale = browser.execute_script("return sunrigCharts['kwh-chart'].scales.kwh")
    assert scale["min"] == 0  # bars stand on zero
    total = browser.find_element(By.ID, "total-kwh").text
    assert total == f"{sum(sum(d.values()) for d in ledger.values()):.1f} kWh"
    browser.save_screenshot(str(ARTIFACTS / "energy-history-week.png"))


def test_history_presets_draw_a_bar_a_step(demo, browser):
    viewport(browser, DESKTOP)
    open_drawn(browser, f"{demo.url}/history")
    for preset, step, bars in (("day", "hour", (23, 24, 25)), ("year", "month", (13,)),
                               ("month", "day", (30,))):
        browser.find_element(By.CSS_SELECTOR, f'[data-preset="{preset}"]').click()
        WebDriverWait(browser, WAIT_S).until(lambda b, p=preset: b.execute_script(
            "return document.body.dataset.drawn === 'yes' && document.body.dataset.preset") == p)
        doc = browser.execute_script("return sunrigCharts.history")
        assert doc["step"] == step and len(doc["bars"]) in bars
        assert len(drawn(browser, "kwh-chart")[0]) == len(doc["bars"])


def test_overview_shows_todays_energy_by_source_and_the_solar_share(demo, browser):
    viewport(browser, DESKTOP)
    open_drawn(browser, demo.url + "/")
    s = browser.execute_script("return fetch('/api/status').then(r => r.json())")
    by_source = s["today"]["energy_kwh_by_source"]
    shown = {r.find_elements(By.TAG_NAME, "td")[0].text
             for r in browser.find_elements(By.CSS_SELECTOR, "#sources tbody tr")}
    names = {"pv": "solar", "battery": "battery", "grid": "grid", "unpriced": "unpriced"}
    assert shown == {names[k] for k in by_source}
    assert re.fullmatch(r"\d+ %", browser.find_element(By.ID, "solar-share").text)
    assert re.fullmatch(r"\d+\.\d kWh", browser.find_element(By.ID, "energy-kwh").text)
    segments = browser.find_elements(By.CSS_SELECTOR, "#source-bar span")
    assert {seg.get_attribute("data-source") for seg in segments} == {
        k for k, v in by_source.items() if v > 0}
    data = drawn(browser, "power-chart")
    assert len(data[0]) == 96 and max(v or 0 for v in data[1]) > 0  # a day of 15 minutes


def test_payback_of_a_young_store_says_not_enough_history_and_its_chart_is_bounded(demo,
                                                                                 browser):
    viewport(browser, DESKTOP)
    open_drawn(browser, demo.url + "/payback")
    p = browser.execute_script("return fetch('/api/payback').then(r => r.json())")
    days = p["pace"]["history_days"]
    assert p["pace"]["state"] == "young" and 1 <= days < 30
    text = browser.find_element(By.ID, "projected").text
    assert re.fullmatch(r"not enough history yet \((\d+) days?\)", text)
    x = browser.execute_script("return sunrigCharts['payback-chart'].scales.x")
    horizon = datetime.fromisoformat(p["pace"]["horizon"]).timestamp()
    since = datetime.fromisoformat(p["since"]).timestamp()
    assert since - 86400 <= x["min"] and x["max"] <= horizon + 86400
    # the table says what the net to date is made of, and adds up to it
    parts = p["parts"]
    assert parts["revenue"] + parts["local_value"] - parts["energy_cost"] - parts["opex"] == \
        pytest.approx(p["net_to_date"], abs=0.02)
    assert p["cumulative"][-1]["net"] == pytest.approx(p["net_to_date"], abs=0.05)


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_page_renders_with_charts_as_wide_as_their_card(demo, browser, size):
    viewport(browser, size)
    for page in PAGES:
        open_drawn(browser, demo.url + page)
        for chart in browser.find_elements(By.CSS_SELECTOR, ".chart"):
            canvas = chart.find_elements(By.TAG_NAME, "canvas")
            if not chart.is_displayed() or not canvas:
                continue
            where = (page, chart.get_attribute("id"))
            assert chart.size["width"] - 80 <= canvas[0].size["width"] <= chart.size["width"] + 1, \
                where
        name = (page.strip("/") or "overview")
        full_page_screenshot(browser, size, ARTIFACTS / f"energy-{name}-{size[0]}x{size[1]}.png")
