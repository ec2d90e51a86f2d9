"""Hyperbolic supplier side against a local stand-in serving recorded-shape answers."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from market_adapter.base import Capacity, MarketError
from market_adapter.hyperbolic import HyperbolicClient, HyperbolicMarket, node_model
from node.ledger import book_payouts

DATA = Path(__file__).parent / "data" / "hyperbolic"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


class Api:
    def __init__(self):
        self.supplied = json.loads((DATA / "supplied.json").read_text())
        self.status, self.auth, self.echo = 200, [], False
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                api.auth.append(self.headers.get("Authorization"))
                if api.status != 200:  # some gateways repeat the request they refused
                    seen = f" {self.headers.get('Authorization')}" if api.echo else ""
                    body = json.dumps({"detail": f"unavailable{seen}"}).encode()
                    self.send_response(api.status)
                elif self.path == "/v1/marketplace/instances/supplied":
                    body = json.dumps(api.supplied).encode()
                    self.send_response(200)
                elif self.path == "/v1/marketplace" and self.command == "POST":
                    body = (DATA / "marketplace.json").read_bytes()
                    self.send_response(200)
                else:
                    body = b"{}"
                    self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                self._answer()

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reserve(self, gpus: int) -> None:
        self.supplied["instances"][0]["gpus_reserved"] = gpus


@pytest.fixture
def api():
    a = Api()
    yield a
    a.httpd.shutdown()
    a.httpd.server_close()


def test_reference_prices_are_medians_per_model_in_usd(api):
    client = HyperbolicClient("key-123", api.url)
    assert client.reference_prices() == {"h100": 1.50, "h200": 2.29}
    assert set(api.auth) == {"Bearer key-123"}
    assert node_model({"hardware": {"gpus": [{"model": "NVIDIA-H200-141G-HBM3e"}]}}) == "h200"


def test_rentals_become_leases_and_survive_a_restart(api, tmp_path, store):
    now = [T0]
    state = tmp_path / "hyperbolic.json"
    market = HyperbolicMarket(HyperbolicClient("k", api.url), state, lambda: now[0])
    [lease] = market.leases()
    assert lease.gpus == 3 and lease.state == "active" and lease.price_per_gpu_hour == 2.29
    now[0] = T0 + timedelta(hours=2)
    api.reserve(5)  # two more GPUs rented
    assert sorted(le.gpus for le in market.leases()) == [2, 3]
    assert book_payouts(store, market.payouts(None), 1.0) == 1  # the new one earned nothing yet
    assert book_payouts(store, market.payouts(None), 1.0) == 0  # same moment: nothing new
    now[0] = T0 + timedelta(hours=4)
    api.reserve(2)  # the first rental (3 GPUs) ended
    again = HyperbolicMarket(HyperbolicClient("k", api.url), state, lambda: now[0])
    leases = {le.lease_id: le for le in again.leases()}
    assert leases["sunrig-hgx-01#1"].state == "closed"
    assert leases["sunrig-hgx-01#1"].ended == T0 + timedelta(hours=4)
    assert leases["sunrig-hgx-01#2"].state == "active"
    book_payouts(store, again.payouts(None), 1.0)
    total = store.query("SELECT sum(amount) AS s FROM payouts")[0]["s"]
    assert total == pytest.approx(3 * 2.29 * 4 + 2 * 2.29 * 2)


def test_api_errors_are_named_and_lose_nothing(api, tmp_path):
    state = tmp_path / "hyperbolic.json"
    market = HyperbolicMarket(HyperbolicClient("k", api.url), state, lambda: T0)
    market.leases()
    before = state.read_text()
    api.status = 401
    with pytest.raises(MarketError, match="API key was refused"):
        market.leases()
    api.status = 502
    with pytest.raises(MarketError, match="HTTP 502"):
        market.leases()
    api.status = 200
    api.supplied = {"instances": [{"id": "sunrig-hgx-01", "gpus_reserved": "many"}]}
    with pytest.raises(MarketError, match="gpus_reserved"):
        market.leases()
    assert state.read_text() == before
    state.write_text("{broken")
    with pytest.raises(MarketError, match="unreadable"):
        HyperbolicMarket(HyperbolicClient("k", api.url), state, lambda: T0)


def test_offers_only_remember_the_floor(api, tmp_path):
    market = HyperbolicMarket(HyperbolicClient("k", api.url), tmp_path / "s.json", lambda: T0)
    market.offer(Capacity(4, "h200", 141.0), 2.4)
    assert market.floor_usd_per_gpu_hour == 2.4
    assert api.auth == []  # no API call: Hyperbolic has none for price or availability


def test_the_agent_plans_hyperbolic_at_its_listed_price(api, tmp_path):
    from tests.conftest import make_agent

    agent, clock = make_agent(tmp_path)
    market = HyperbolicMarket(HyperbolicClient("k", api.url), tmp_path / "h.json", clock.now,
                              currency_rate=0.9)
    agent.parts.markets["hyperbolic"] = market
    agent.parts.terms["hyperbolic"] = agent.parts.terms["sim"]
    agent.run_job("sync_markets")
    assert agent.parts.terms["hyperbolic"].expected_price_per_gpu_hour == pytest.approx(
        2.29 * 0.9)  # this rig's H200s are listed at 229 cents per GPU-hour
    assert any(le["market"] == "hyperbolic" for le in agent.store.leases("active"))
    agent.store.close()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 502, 503])
def test_an_answer_echoing_the_api_key_never_carries_it_into_the_error(api, tmp_path, status):
    key = "hyp-test-K3y-a81f0c"
    market = HyperbolicMarket(HyperbolicClient(key, api.url), tmp_path / "s.json", lambda: T0)
    api.status, api.echo = status, True
    with pytest.raises(MarketError) as failed:
        market.leases()
    assert key not in str(failed.value) and f"HTTP {status}" in str(failed.value)
    with pytest.raises(MarketError) as failed:
        market.reference_prices()
    assert key not in str(failed.value)
