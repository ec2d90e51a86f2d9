"""Akash and Hyperbolic come from the config like the simulated market, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.clock import SimulatedClock
from node.config import parse_config
from node.errors import ConfigError
from node.wiring import build_parts
from tests.conftest import START


def config(tmp_path: Path, key_file: str, provider: str = "akash1sunrigprovider") -> str:
    return f"""
[markets]
usd_per_site_currency = 1.08
[markets.akash]
enabled = true
provider_address = "{provider}"
offer_file = "{tmp_path / 'offer.json'}"
[markets.hyperbolic]
enabled = true
api_key_file = "{key_file}"
state_file = "{tmp_path / 'hyperbolic.json'}"
"""


def test_both_markets_are_built_with_their_terms_in_site_currency(tmp_path):
    key = tmp_path / "hyperbolic.key"
    key.write_text("secret-key\n")
    cfg = parse_config(config(tmp_path, str(key)), "t.toml", tmp_path)
    parts = build_parts(cfg, SimulatedClock(START, speed=0), tmp_path, lambda: 0.0)
    assert set(parts.markets) == {"akash", "hyperbolic"}  # the simulated market is off
    assert parts.markets["akash"].currency_rate == pytest.approx(1 / 1.08)
    assert parts.terms["akash"].expected_price_per_gpu_hour == pytest.approx(2.30 / 1.08)
    assert parts.markets["hyperbolic"].client.session.headers["Authorization"] == \
        "Bearer secret-key"


def test_a_missing_key_or_address_is_a_config_error(tmp_path):
    cfg = parse_config(config(tmp_path, str(tmp_path / "nope.key")), "t.toml", tmp_path)
    with pytest.raises(ConfigError, match="api_key_file: cannot read the API key"):
        build_parts(cfg, SimulatedClock(START, speed=0), tmp_path, lambda: 0.0)
    with pytest.raises(ConfigError, match="provider_address"):
        parse_config(config(tmp_path, "k", provider=""), "t.toml", tmp_path)
