"""The Local AI page: its data from requests that really went through the gateway (the simulated
server, driven by the openai client), the page served by the dashboard's own app, and its
script run in headless Chromium."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

import openai
import pytest
from conftest import make_agent, wait_until
from werkzeug.serving import make_server

from node.books.ledger import book_local_value
from node.config import InferenceConfig, InferencePriceConfig
from node.inference.runtime import LocalInference
from node.inference.users import add_user
from node.service import views_for
from node.status import agent_status
from webui.app import create_app

SECRET = "QZXV the owner's private question"  # must appear nowhere on the page or in its data


@pytest.fixture(scope="module")
def local_ai(tmp_path_factory):
    agent, _ = make_agent(tmp_path_factory.mktemp("local"))
    cfg = InferenceConfig(enabled=True, port=0, simulated=True, requests_per_minute=1e4)
    cfg = replace(cfg, prices=(InferencePriceConfig(cfg.simulated_model, 1.0, 3.0),))
    inference = LocalInference(cfg, agent.store, agent.clock).start()
    inference.simulated.delay_per_token_s = 0.0
    base = f"http://127.0.0.1:{inference.gateway.port}/v1"
    for user, n in (("ann", 3), ("bob", 1)):
        client = openai.OpenAI(base_url=base, api_key=add_user(agent.store, user, datetime.now(
            UTC)), max_retries=0)
        for _ in range(n):
            client.chat.completions.create(model=cfg.simulated_model, messages=[
                {"role": "user", "content": SECRET}])
    wait_until(lambda: len(agent.store.query("SELECT id FROM inference_usage")) == 4,
               "the four usage rows")
    book_local_value(agent.store, inference.prices())
    # the views and the page as the dashboard registers them
    app = create_app(lambda: agent_status(agent, inference), views=views_for(agent))
    yield agent, inference, app
    inference.stop()
    agent.store.close()


def test_the_local_view_counts_each_users_requests_tokens_latency_and_value(local_ai):
    agent, inference, app = local_ai
    doc = app.test_client().get("/api/local").get_json()
    assert doc["ok"]
    rows = agent.store.query("SELECT user, prompt_tokens, completion_tokens, latency_ms "
                             "FROM inference_usage")
    users = {u["user"]: u for u in doc["users"]}
    assert (users["ann"]["requests"], users["bob"]["requests"]) == (3, 1)
    assert users["ann"]["completion_tokens"] == sum(
        r["completion_tokens"] for r in rows if r["user"] == "ann")
    latency = doc["latency_ms"][inference.cfg.simulated_model]
    assert latency["n"] == 4
    assert min(r["latency_ms"] for r in rows) <= latency["p50"] <= latency["p95"] <= max(
        r["latency_ms"] for r in rows)
    prompt = sum(r["prompt_tokens"] for r in rows)
    completion = sum(r["completion_tokens"] for r in rows)
    [day] = doc["days"]
    assert day["requests"] == 4 and day["tokens"] == prompt + completion
    assert day["value"] == pytest.approx((prompt * 1.0 + completion * 3.0) / 1e6)
    assert SECRET not in str(doc)


def test_a_bad_range_is_refused_naming_what_was_wrong(local_ai):
    _, _, app = local_ai
    answer = app.test_client().get("/api/local?from=last-week")
    assert answer.status_code == 400
    assert "from and to must be dates" in answer.get_json()["error"]
    answer = app.test_client().get("/api/local?from=2026-05-02&to=2026-05-01")
    assert answer.status_code == 400 and "before" in answer.get_json()["error"]


def test_the_page_lists_the_servers_and_the_gateway(local_ai):
    _, inference, app = local_ai
    html = app.test_client().get("/local").get_data(as_text=True)
    assert f"127.0.0.1:{inference.gateway.port}/v1" in html
    assert "sunrig-simulated (simulated)" in html and "<td>ready</td>" in html
    assert SECRET not in html


def test_the_page_script_draws_the_users_and_latency_in_chromium(local_ai):
    from selenium.webdriver.common.by import By

    from tests.browser_helpers import chromium, open_drawn

    _, _, app = local_ai
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with chromium() as browser:
            open_drawn(browser, f"http://127.0.0.1:{server.server_port}/local")
            users = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#users tbody tr")]
            assert len(users) == 2 and users[0].startswith("ann sunrig-simulated 3 0")
            assert browser.find_element(By.ID, "total-requests").text == "4"
            assert browser.find_elements(By.CSS_SELECTOR, "#local-chart canvas")
            latency = browser.find_element(By.CSS_SELECTOR, "#latency tbody tr").text
            assert latency.startswith("sunrig-simulated") and latency.endswith(" 4")
            errors = [e for e in browser.get_log("browser")
                      if e["level"] == "SEVERE" and e["source"] != "network"]  # no favicon
            assert not errors, errors
    finally:
        server.shutdown()


def test_sunrig_status_lines_name_each_server_its_state_and_gpus(local_ai):
    from node.inference.view import status_lines

    agent, inference, _ = local_ai
    lines = status_lines(agent_status(agent, inference)["local_inference"])
    assert lines[0].startswith(f"local inference: http://127.0.0.1:{inference.gateway.port}/v1")
    assert "demand asks for 0 GPU(s)" in lines[0]
    assert lines[1].split() == ["sunrig-simulated", "(simulated)", "ready", "no", "GPU;", "0",
                                "in", "flight,", "0", "restarts"]
    assert status_lines({"enabled": False}) == ["local inference: off"]
