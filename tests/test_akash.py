"""Akash: the bid-price script on real-shaped orders, the offer file, attributes, and the
provider's /status (the lease and escrow sync: test_akash_leases.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from market_adapter.akash import (
    AkashChain,
    AkashMarket,
    AkashPrices,
    build_offer,
    provider_attributes,
)
from market_adapter.akash_bid import parse_offer, price_order
from market_adapter.akash_order import Decline, parse_order
from market_adapter.base import Capacity, MarketError
from tests.akash_chain_fixtures import ChainNode
from tests.conftest import HANG_S

DATA = Path(__file__).parent / "data" / "akash"

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
GIB = 2**30
PRICES = AkashPrices(cpu_usd_per_core_hour=0.0, memory_usd_per_gib_hour=0.0,
                     storage_usd_per_gib_month=(("beta3", 0.0), ("ephemeral", 0.0)),
                     endpoint_usd_per_month=0.0, ip_usd_per_month=0.0, margin_pct=0.0,
                     akt_usd=2.5)


def offer(gpus=6, floor=2.0, prices=PRICES, valid=NOW + timedelta(minutes=5)):
    return build_offer(Capacity(gpus, "h200", 141.0), floor, prices, valid)


def order(units=1, count=1, denom="uact", amount="100000", model="h200", groups=1, **extra):
    group = {"cpu": 8000, "memory": 64 * GIB,
             "gpu": {"units": units, "attributes": {"vendor": {"nvidia": {
                 "model": model, "ram": "141Gi", "interface": "sxm"}}}},
             "storage": [{"class": "beta3", "size": 100 * GIB}], "count": count,
             "endpoint_quantity": 1, "ip_lease_quantity": 0, **extra}
    return {"resources": [group] * groups, "price": {"denom": denom, "amount": amount},
            "price_precision": 6}


def priced(order_doc: dict, offer_doc: dict, now: datetime = NOW) -> str:
    return price_order(parse_order(order_doc), parse_offer(offer_doc), now)


def per_block(usd_per_hour: float) -> Decimal:
    return Decimal(repr(usd_per_hour * 6.117 / 3600 * 1e6))


def test_one_gpu_in_uact_bids_the_floor_per_block():
    bid = Decimal(priced(order(), offer(), NOW))
    assert bid == pytest.approx(per_block(2.0), abs=Decimal("0.000001"))
    assert bid >= per_block(2.0)  # rounded up at the order's precision, never under the floor


def test_count_and_several_groups_multiply_the_gpus():
    two = Decimal(priced(order(units=2, count=3), offer(), NOW))  # 6 GPUs
    assert two == pytest.approx(6 * per_block(2.0), abs=Decimal("0.00001"))
    groups = Decimal(priced(order(units=1, groups=3), offer(), NOW))
    assert groups == pytest.approx(3 * per_block(2.0), abs=Decimal("0.00001"))
    with pytest.raises(Decline, match="asks for 7 GPU"):
        priced(order(units=7), offer(gpus=6), NOW)


def test_cpu_memory_storage_margin_and_akt_are_priced():
    prices = AkashPrices(cpu_usd_per_core_hour=0.01, memory_usd_per_gib_hour=0.002,
                         storage_usd_per_gib_month=(("beta3", 0.73),), endpoint_usd_per_month=0,
                         ip_usd_per_month=0, margin_pct=10.0, akt_usd=2.5)
    usd_h = (2.0 + 8 * 0.01 + 64 * 0.002 + 100 * 0.73 / (30.437 * 24)) * 1.10
    bid = Decimal(priced(order(), offer(prices=prices), NOW))
    assert float(bid) == pytest.approx(float(per_block(usd_h)), rel=1e-6)
    akt = Decimal(priced(order(denom="uakt"), offer(prices=prices), NOW))
    assert float(akt) == pytest.approx(float(bid) / 2.5, rel=1e-5)


def test_wildcard_orders_get_the_wildcard_price_and_unknown_models_are_declined():
    assert priced(order(model="*"), offer(), NOW) == priced(order(), offer(), NOW)
    no_model = order()
    no_model["resources"][0]["gpu"]["attributes"] = {"vendor": {"nvidia": {}}}
    assert priced(no_model, offer(), NOW) == priced(order(), offer(), NOW)
    with pytest.raises(Decline, match="'a100' is not on this rig"):
        priced(order(model="a100"), offer(), NOW)


def test_declines_say_why():
    with pytest.raises(Decline, match="below the floor"):
        priced(order(amount="10"), offer(), NOW)
    with pytest.raises(Decline, match="not supported"):
        priced(order(denom="ibc/170C677610AC31DF0904FFE09CD3B5C657492170E7E52372E48756B71"
                           "E56F2F1"), offer(), NOW)
    with pytest.raises(Decline, match="expired"):
        priced(order(), offer(valid=NOW - timedelta(seconds=1)), NOW)
    with pytest.raises(Decline, match=r"order.price.amount: must be a decimal"):
        priced(order(amount="lots"), offer(), NOW)
    with pytest.raises(Decline, match="storage class 'beta1'"):
        priced({**order(), "resources": [{**order()["resources"][0], "storage": [
            {"class": "beta1", "size": GIB}]}]}, offer(), NOW)
    no_akt = AkashPrices(akt_usd=0.0)
    with pytest.raises(Decline, match="AKT price"):
        priced(order(denom="uakt"), offer(prices=no_akt), NOW)


def run_script(tmp_path, stdin: str, offer_doc: dict | None, *args):
    path = tmp_path / "offer.json"
    path.unlink(missing_ok=True)
    if offer_doc is not None:
        path.write_text(json.dumps(offer_doc))
    env = {**os.environ, "AKASH_OWNER": "akash1tenant", "AKASH_DENOM": "uact",
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "market_adapter.akash_bid", "--offer",
                           str(path), *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=HANG_S, cwd=tmp_path)


def test_the_script_prints_one_number_or_exits_non_zero_with_a_reason(tmp_path):
    live = offer(valid=datetime.now(UTC) + timedelta(minutes=5))
    ok = run_script(tmp_path, json.dumps(order()), live)
    assert ok.returncode == 0 and ok.stderr == ""
    assert Decimal(ok.stdout.strip()) > 0 and len(ok.stdout.strip().splitlines()) == 1
    low = run_script(tmp_path, json.dumps(order(amount="1")), live)
    assert low.returncode == 1 and "below the floor" in low.stderr and low.stdout == ""
    garbage = run_script(tmp_path, "{not json", live)
    assert garbage.returncode == 1 and "not JSON" in garbage.stderr
    missing = run_script(tmp_path, json.dumps(order()), None)
    assert missing.returncode == 1 and "is the sunrig agent running" in missing.stderr


def test_the_wrapper_and_sunrig_command_price_the_same(tmp_path):
    live = offer(valid=datetime.now(UTC) + timedelta(minutes=5))
    (tmp_path / "offer.json").write_text(json.dumps(live))
    out = subprocess.run([sys.executable, "-c", "import sys; from node.cli.entry import main; "
                          "sys.exit(main())", "akash", "price-script", "--offer",
                          str(tmp_path / "offer.json")], input=json.dumps(order()),
                         capture_output=True, text=True, cwd=ROOT, timeout=HANG_S)
    assert out.returncode == 0, out.stderr
    assert out.stdout == run_script(tmp_path, json.dumps(order()), live).stdout


def test_attributes_name_the_model_and_tee_only_when_verified():
    attrs = dict(provider_attributes("H200", 141.0, "sxm5", tee=False))
    assert attrs["capabilities/gpu/vendor/nvidia/model/h200"] == "true"
    assert "capabilities/gpu/vendor/nvidia/model/h200/ram/141Gi/interface/sxm" in attrs
    assert "tee/type" not in attrs
    assert dict(provider_attributes("h200", 141.0, "sxm", tee=True))["tee/type"]


def test_the_offer_file_is_replaced_whole(tmp_path):
    market = AkashMarket(AkashChain("http://127.0.0.1:9", "p"), tmp_path / "o.json", PRICES,
                         1.0, lambda: NOW)
    market.offer(Capacity(3, "h200", 141.0, tee=True), 2.2)
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["akash"]["gpus_available"] == 3 and doc["akash"]["tee"] is True
    assert doc["akash"]["floor_usd_per_gpu_hour"] == {"h200": 2.2, "*": 2.2}
    assert datetime.fromisoformat(doc["valid_until"]) == NOW + timedelta(minutes=5)
    assert [p.name for p in tmp_path.iterdir()] == ["o.json"]  # no temporary left behind


@pytest.fixture
def provider():
    """The provider's own API: only /status, as the recorded answer shows it."""
    server = ChainNode()
    server.answer["/status"] = (200, json.loads((DATA / "provider_status.json").read_text()))
    yield server
    server.close()


def test_the_provider_status_is_read_and_a_down_provider_downs_the_market(provider, tmp_path):
    from market_adapter.akash import AkashProvider
    address = "akash1sunrigproviderqqqqqqqqqqqqqqqqqqqqqx9"
    node = ChainNode()
    try:
        market = AkashMarket(AkashChain(node.url, address), tmp_path / "o.json", PRICES, 1.0,
                             lambda: NOW, provider=AkashProvider(provider.url, address))
        market.leases()
        assert market.provider_leases == 1
        status = provider.answer["/status"]
        provider.answer["/status"] = (502, {"code": 13, "message": "internal"})
        with pytest.raises(MarketError, match="/status answered HTTP 502"):
            market.leases()
        provider.answer["/status"] = status
        impostor = AkashMarket(AkashChain(node.url, "akash1other"), tmp_path / "o.json",
                               PRICES, 1.0, lambda: NOW,
                               provider=AkashProvider(provider.url, "akash1other"))
        with pytest.raises(MarketError, match="not akash1other"):
            impostor.leases()
    finally:
        node.close()


@pytest.mark.parametrize("body,why", [
    (b"<html>provider</html>", "answered something that is not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "answered JSON nested too deep to read"),
    (b'{"cluster": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deep"),
    (b"[]", "answered a list, not a JSON object"),
    (b'"up"', "answered a string, not a JSON object"),
    (b'{"cluster": "busy"}', "cluster: is a string, not an object"),
    (b'{"cluster": {"leases": "many"}}', "cluster.leases: is 'many', not a whole number"),
    (b'{"cluster": {"leases": true}}', "cluster.leases: is True"),
    (b'{"cluster": {"leases": 2.5}}', "cluster.leases: is 2.5"),
    (b'{"cluster": {"leases": -1}}', "cluster.leases: -1 is outside"),
    (b'{"address": ["akash1"], "cluster": {"leases": 1}}', "address: is a list, not a name"),
    (b'{"pad": "' + b"x" * (2 << 20) + b'"}', "answered more than 1 MiB"),
])
def test_a_garbage_provider_status_is_a_market_error_saying_what_came(monkeypatch, body, why):
    from market_adapter import akash
    from market_adapter.akash import AkashProvider
    monkeypatch.setattr(akash, "MAX_BODY_BYTES", 1 << 20)
    node = ChainNode()  # as a provider: /status answers `body`
    try:
        node.answer["/status"] = (200, body)
        with pytest.raises(MarketError) as caught:
            AkashProvider(node.url, "akash1sunrig").running_leases()
        assert why in str(caught.value) and "/status" in str(caught.value)
    finally:
        node.close()
