"""No secret sunrig holds ever leaves it: a real agent wired with every feed and market failing,
each holding a known secret, and every output it has searched for them.

ENTSO-E with a token against a local server that refuses, answers 401, answers 500 with the URL
echoed, answers garbage or an acknowledgement quoting the URL, or never answers in time;
Hyperbolic with an API key against a server that echoes the Authorization header in every
failing answer; Akash behind a proxy that echoes both; MQTT with a wrong password against a real
mosquitto; the Home Assistant publisher with its password. Then logs (every level, tracebacks
formatted), the events table, every page, every /api view, /metrics, `sunrig status --json`,
what was published over MQTT and every file the agent wrote are searched.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote_plus
from xml.sax.saxutils import escape

import paho.mqtt.client as mqtt
import pytest
from werkzeug.serving import make_server

from energy.price_feeds import entsoe
from node import service, wiring
from node.cli import commands as cli
from node.clock import SimulatedClock
from node.config import MqttMappingConfig
from node.service import open_agent, views_for
from node.status import agent_status
from tests.conftest import START, demo_cfg
from tests.http_stub import JsonHandler, serve
from tests.mosquitto import Broker
from webui.app import create_app
from webui.auth import Auth

TOKEN = "entsoe-Tok3n-5b1e0c7d-99aa"
API_KEY = "hyp-K3y-0f4e2a9c81d7"
MQTT_PASSWORD = "mqtt-Wr0ng-pa55-e4d1"
HA_PASSWORD = "ha-Pa55w0rd-7c2b9e10"
SECRETS = (TOKEN, API_KEY, MQTT_PASSWORD, HA_PASSWORD)
WATCH_PASSWORD = "watcher-only-in-the-test"
ENTSOE_MODES = ("refused", "401", "500 echo", "garbage", "acknowledgement echo", "timeout")
HYPERBOLIC_MODES = (500, 401, 403, 502, 200)
HANG_S = 120.0


class Peers:
    """The failing outside world: one HTTP server for ENTSO-E, Hyperbolic and the Akash
    chain, switched between failure modes, on 127.0.0.1."""

    def __init__(self):
        self.entsoe_mode, self.hyperbolic_status = "refused", 500
        peers = self

        class Handler(JsonHandler):
            def do_GET(self):  # noqa: N802
                self._answer()

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer()

            def _answer(self):
                if self.path.startswith("/api"):
                    return peers.entsoe(self)
                echo = f"{self.command} {self.path} Authorization: " \
                       f"{self.headers.get('Authorization')}"
                if self.path.startswith("/v1/"):
                    status = peers.hyperbolic_status
                    body = {"detail": f"cannot serve {echo}"} if status != 200 else \
                        {"instances": f"not a list, {echo}"}
                    return self.send_json(status, body)
                # the chain behind a proxy that repeats every credential it has seen
                return self.send_json(502, {"error": f"upstream failed: {echo} "
                                                     f"securityToken={TOKEN} key={API_KEY}"})

        self.httpd, self.url = serve(Handler)

    def entsoe(self, h: JsonHandler) -> None:
        mode, url = self.entsoe_mode, f"{self.url}{h.path}"
        if mode == "timeout":
            time.sleep(1.5)  # past the client's timeout: it has gone, nothing to answer
            return None
        if mode == "401":
            return h.send_json(401, {"error": f"token refused for {url}"})
        if mode == "500 echo":
            return h.send_json(500, {"error": f"internal error at {url}"})
        text = {"garbage": f"<html>{url}</html><<",
                "acknowledgement echo": ("<Acknowledgement_MarketDocument><Reason><code>B11"
                                         f"</code><text>bad request {escape(url)}</text>"
                                         "</Reason></Acknowledgement_MarketDocument>"),
                "ok": "<Acknowledgement_MarketDocument><Reason><code>999</code><text>No "
                      "matching data found</text></Reason></Acknowledgement_MarketDocument>"}[mode]
        body = text.encode()
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def entsoe_url(self) -> str:
        if self.entsoe_mode != "refused":
            return self.url + "/api"
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            return f"http://127.0.0.1:{s.getsockname()[1]}/api"


def wait_for(condition, what: str):
    deadline = time.monotonic() + HANG_S
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {HANG_S:.0f} s"
        time.sleep(0.05)


@pytest.fixture
def broker(tmp_path):
    """mosquitto that knows the Home Assistant user and a watcher, and no password sunrig's
    site reader holds."""
    conf_dir = tmp_path / "broker"
    conf_dir.mkdir()
    b = Broker(conf_dir)
    passwords = conf_dir / "passwd"
    passwords.touch(0o600)
    for user, password in (("ha", HA_PASSWORD), ("watcher", WATCH_PASSWORD),
                           ("site", "the-right-one-is-elsewhere")):
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True,
                       capture_output=True)
    # run as root (a container), mosquitto would drop to a user that cannot read tmp_path
    b.conf.write_text(f"user root\nlistener {b.port} 127.0.0.1\nallow_anonymous false\n"
                      f"password_file {passwords}\npersistence false\n")
    b.start()
    yield b
    b.stop()


def secret_file(directory: Path, name: str, value: str) -> str:
    path = directory / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def wired_config(tmp_path: Path, peers: Peers, broker: Broker):
    keys = tmp_path / "keys"
    keys.mkdir()
    cfg = demo_cfg(tmp_path)
    m = cfg.markets
    mqtt_site = replace(cfg.energy.mqtt, host="127.0.0.1", port=broker.port, username="site",
                        password_file=secret_file(keys, "mqtt.pw", MQTT_PASSWORD),
                        mappings=(MqttMappingConfig("site/pv", "pv_w"),))
    return replace(
        cfg,
        tariff=replace(cfg.tariff, kind="entsoe",
                       entsoe_token_file=secret_file(keys, "entsoe.token", TOKEN)),
        markets=replace(m, hyperbolic=replace(
            m.hyperbolic, enabled=True, base_url=peers.url, state_file=str(tmp_path / "hyp.json"),
            api_key_file=secret_file(keys, "hyperbolic.key", API_KEY)),
            akash=replace(m.akash, enabled=True, rest_url=peers.url,
                          provider_address="akash1provider", offer_file=str(tmp_path / "o.json"))),
        energy=replace(cfg.energy, source="mqtt", mqtt=mqtt_site),
        homeassistant=replace(cfg.homeassistant, enabled=True, mqtt_host="127.0.0.1",
                              mqtt_port=broker.port, username="ha",
                              password_file=secret_file(keys, "ha.pw", HA_PASSWORD)))


def watch(broker: Broker) -> tuple[mqtt.Client, list[bytes]]:
    """Everything published on the broker, as the world sees it."""
    seen: list[bytes] = []
    ready = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
    c.username_pw_set("watcher", WATCH_PASSWORD)
    c.on_connect = lambda client, *_: client.subscribe("#")
    c.on_subscribe = lambda *_: ready.set()
    c.on_message = lambda client, userdata, msg: seen.append(msg.topic.encode() + b" "
                                                             + msg.payload)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    wait_for(ready.is_set, "the watcher subscribed")
    return c, seen


def leaks(text: str | bytes) -> list[str]:
    """The secrets found in `text`, in any form they might be written in."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [s for s in SECRETS if s in text or quote_plus(s) in text]


def run_failing(agent, peers: Peers, statuses: list[str]) -> None:
    """Every failure mode once, each after a good answer, so each is reported anew."""
    agent.parts.tariff.refresh_s = 0  # fetch at every run, not once a quarter hour
    modes = list(zip(ENTSOE_MODES, HYPERBOLIC_MODES * 2, strict=False))
    for entsoe_mode, hyperbolic_status in modes:
        peers.entsoe_mode = "ok"
        agent.run_job("prices")
        peers.entsoe_mode, peers.hyperbolic_status = entsoe_mode, hyperbolic_status
        for name in ("prices", "sync_markets", "sample_site"):
            assert agent.run_job(name) is False, (name, entsoe_mode)
        statuses.append(json.dumps(agent_status(agent)))


def test_no_secret_reaches_any_log_event_page_api_metric_cli_or_file(
        tmp_path, broker, caplog, capsys, monkeypatch):
    peers = Peers()
    monkeypatch.setattr(wiring, "entsoe", lambda token, zone: lambda start, end: entsoe(
        token, zone, base_url=peers.entsoe_url(), timeout_s=0.5)(start, end))
    caplog.set_level(logging.DEBUG)
    root_text = io.StringIO()
    root_handler = logging.StreamHandler(root_text)
    root_handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(root_handler)
    watcher, published = watch(broker)
    cfg = wired_config(tmp_path, peers, broker)
    agent = open_agent(cfg, clock=SimulatedClock(START, speed=0))
    ha, statuses = None, []
    try:
        ha = service._home_assistant(cfg, agent)
        agent.run_all_once()
        run_failing(agent, peers, statuses)
        wait_for(lambda: any(b"sunrig/sunrig/state" in p for p in published),
                 "Home Assistant published its state")
        errors = {n: j["last_error"] for n, j in agent_status(agent)["jobs"].items()
                  if not j["ok"]}
        assert {"prices", "sync_markets", "sample_site"} <= set(errors)

        outputs: dict[str, str | bytes] = {f"status after {m}": s
                                           for m, s in zip(ENTSOE_MODES, statuses, strict=True)}
        outputs["events"] = json.dumps(agent.store.events(1000))
        app = create_app(lambda: agent_status(agent), Auth(tmp_path / "web"),
                         views=views_for(agent))
        web = app.test_client()
        for path in ("/", "/plan", "/history", "/payback", "/settings", "/login", "/metrics",
                     "/api/status", "/api/session", "/api/plan", "/api/history",
                     "/api/history.csv", "/api/payback", "/api/settings"):
            r = web.get(path)
            assert r.status_code == 200, path
            outputs[path] = r.get_data()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            capsys.readouterr()
            assert cli.main(["status", "--url", f"http://127.0.0.1:{server.port}", "--json"]) \
                == 0
            printed = capsys.readouterr()
            outputs["sunrig status --json"] = printed.out + printed.err
        finally:
            server.shutdown()
    finally:
        if ha is not None:
            ha.stop()
        agent.stop()
        agent.store.close()
        watcher.loop_stop()
        watcher.disconnect()
        logging.getLogger().removeHandler(root_handler)
        peers.httpd.shutdown()
        peers.httpd.server_close()

    assert "ENTSO-E" in caplog.text and "sync_markets failing" in caplog.text
    outputs["caplog"] = caplog.text
    outputs["root handler"] = root_text.getvalue()
    outputs["mqtt published"] = b"\n".join(published)
    for path in tmp_path.rglob("*"):
        if path.is_file() and "keys" not in path.parts and "broker" not in path.parts:
            outputs[f"file {path.relative_to(tmp_path)}"] = path.read_bytes()
    found = {where: leaks(text) for where, text in outputs.items() if leaks(text)}
    assert found == {}
    # and the failures are still told, each in its own words
    assert "timed out" in statuses[-1] and "Connection refused" in statuses[0]
    assert "ENTSO-E refused: B11 bad request" in statuses[4]
    assert "Bearer [redacted]" in statuses[0] and "token was refused" in statuses[1]


# --- the rule itself, on inputs of each kind ------------------------------------------------------

REGISTERED = "reg-S3cret/with+odd&chars"


@pytest.mark.parametrize("text", [
    f"plain {REGISTERED} in a sentence",
    f"url-encoded ?key={quote_plus(REGISTERED)}&x=1",
    f"percent-encoded {REGISTERED.replace('/', '%2F').replace('+', '%2B').replace('&', '%26')}",
    "json-escaped " + json.dumps({"v": REGISTERED}),
])
def test_a_registered_secret_is_scrubbed_in_every_form_it_is_written_in(text):
    from energy.redact import redact, register
    register(REGISTERED)
    assert "S3cret" not in redact(text)


@pytest.mark.parametrize("text, kept", [
    ("GET /api?securityToken=never-registered-1&documentType=A44", "documentType=A44"),
    ("https://api.example/v1?api_key=never-registered-2", "https://api.example/v1?api_key="),
    ("Authorization: Bearer never-registered-3", "Authorization: Bearer"),
    ("{'Authorization': 'Basic never-registered-4'}", "Authorization"),
    ('{"password": "never-registered-5", "user": "owner"}', '"user": "owner"'),
    ("mqtts://owner:never-registered-6@broker:8883", "broker:8883"),
    ("POST /login?access_token=never-registered-7", "POST /login"),
])
def test_what_is_shaped_like_a_credential_is_scrubbed_though_never_registered(text, kept):
    from energy.redact import redact
    out = redact(text)
    assert "never-registered" not in out and kept in out and "[redacted]" in out


def test_an_http_failure_is_told_without_its_url(tmp_path):
    import requests

    from energy.redact import http_failure
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    url = f"http://127.0.0.1:{closed}/api?securityToken=never-registered-8"
    with pytest.raises(requests.RequestException) as refused:
        requests.get(url, timeout=5)
    assert "never-registered" in str(refused.value)  # what requests would have shown
    assert http_failure(refused.value) == "connection failed (Connection refused)"
    for exc in (requests.ConnectTimeout(url), requests.ReadTimeout(url),
                requests.exceptions.SSLError(url), requests.TooManyRedirects(url),
                requests.exceptions.ChunkedEncodingError(url), requests.exceptions.InvalidURL(url),
                requests.exceptions.InvalidHeader(url)):
        assert "never-registered" not in http_failure(exc)


def test_any_logger_at_any_level_is_scrubbed_tracebacks_included(caplog):
    from energy.redact import register
    register("log-S3cret-value-9")
    caplog.set_level(logging.DEBUG)
    try:
        raise RuntimeError("failed with log-S3cret-value-9 inside")
    except RuntimeError:
        logging.getLogger("some.library").debug("%s and %r", "log-S3cret-value-9",
                                                {"k": "log-S3cret-value-9"}, exc_info=True)
    logging.getLogger("sunrig.any").error("token=log-S3cret-value-9")
    assert "S3cret" not in caplog.text and caplog.text.count("[redacted]") >= 4
