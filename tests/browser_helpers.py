"""Headless Chromium for the dashboard's browser tests (Debian's chromium and chromium-driver,
installed by `make test`), with the page's viewport set exactly as a phone or desktop has it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import HANG_S

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--window-size=1280,1000")
# waits end when the page shows what is awaited; HANG_S only turns a hang into a failure
WAIT_S = HANG_S
DESKTOP = (1400, 1000)
PHONE = (390, 844)


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    exe, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not exe or not driver:
        raise RuntimeError("chromium and chromium-driver are not installed: run 'make test'")
    options = webdriver.ChromeOptions()
    options.binary_location = exe
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    b = webdriver.Chrome(service=Service(driver), options=options)
    b.set_page_load_timeout(WAIT_S)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield b
    finally:
        b.quit()


def viewport(browser: webdriver.Chrome, size: tuple[int, int]) -> None:
    """The page's own width and height (a phone's is not the window's less some chrome)."""
    width, height = size
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def open_drawn(browser: webdriver.Chrome, url: str) -> None:
    """Open a page and wait until its script says what it draws is drawn."""
    browser.get(url)
    WebDriverWait(browser, WAIT_S).until(
        lambda b: b.execute_script("return document.body.dataset.drawn") == "yes")


def full_page_screenshot(browser: webdriver.Chrome, size: tuple[int, int], path: Path) -> None:
    """The whole page at this width: the viewport stretched to the page's height, then back."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    viewport(browser, (size[0], min(int(height), 6000)))
    browser.save_screenshot(str(path))
    viewport(browser, size)
