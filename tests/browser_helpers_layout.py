"""What the layout tests share: the pages as the navigation lists them, how to tell a page is
drawn, and a dashboard served in this process on a real agent (for answers the demo process
cannot be asked to give on cue)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from node import settings
from node.errors import ConfigError
from node.status import agent_status
from tests.conftest import HANG_S, make_agent, run_for
from webui.app import create_app
from webui.auth import Auth

WAIT_S = HANG_S
PHONE, SMALL_PHONE, DESKTOP = (390, 844), (360, 740), (1400, 1000)
CHART_PAGES = ("/plan", "/history", "/payback")  # their scripts say when the charts are drawn


def nav_links(browser) -> list[tuple[str, str]]:
    """The navigation as the page shows it: (path, label) of each page link."""
    return [(a.get_attribute("pathname"), a.text)
            for a in browser.find_elements(By.CSS_SELECTOR, "header nav a")]


def wait_drawn(browser, path: str) -> None:
    """Until the page's script has filled it: its data, or its charts."""
    def ready(b) -> bool:
        data = b.execute_script("return document.body.dataset")
        if path == "/":
            return b.find_element(By.ID, "rig").text not in ("", "–")
        if path == "/settings":
            return data.get("loaded") == "yes"
        if path in CHART_PAGES:
            return data.get("drawn") == "yes"
        return b.execute_script("return document.readyState") == "complete"
    WebDriverWait(browser, WAIT_S).until(ready)


def set_password(browser, url: str, password: str, next_path: str = "/") -> None:
    """The first login sets the owner's password: typed twice."""
    browser.get(f"{url}/login?next={next_path}")
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "confirm").send_keys(password)
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: "/login" not in b.current_url)


def answer_change(agent, body: dict) -> dict:
    """The settings action as the service answers it, every error named."""
    try:
        return {"ok": True, **agent.change_settings(body)}
    except ConfigError as exc:
        return settings.error_answer(exc)


@contextmanager
def served_agent(tmp_path: Path, password: str) -> Iterator[str]:
    """A dashboard on 127.0.0.1 over a real agent that ran an hour on the simulated rig."""
    agent, clock = make_agent(tmp_path)
    run_for(agent, clock, hours=1)
    auth = Auth(tmp_path)
    auth.set_password(password)
    app = create_app(lambda: agent_status(agent), auth,
                     views={"settings": lambda args: settings.current(agent.cfg)},
                     actions={"settings": lambda body: answer_change(agent, body)})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        agent.store.close()
