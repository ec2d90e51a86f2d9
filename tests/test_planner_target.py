"""The planner's target on the owner's rig: at least 0.95 of the online bound's revenue and more
profit than every simple policy, on price years it was not built on.

Four weeks of March: the shipped year's own prices, and 2025's (the shipped file's later part)
moved onto 2024's dates by whole weeks, as `sunrig bench economics --prices` does. The year-long
figures are `make bench`'s.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from energy.series import load_series
from node.cli.simulate import online_revenue_bound, scenario
from node.planning.economics import load_site, simulate
from node.planning.policies import POLICIES

ROOT = Path(__file__).resolve().parent.parent
SIMPLE = ("always_sell", "solar_only", "cheapest_hours", "never_sell")
START, DAYS = "2024-03-04", 28


def later_year(path: Path) -> Path:
    """The shipped prices from 2025 on, a year the period does not cover, in the same format."""
    cfg = scenario(str(ROOT / "scenarios/owner-8gpu.toml"))
    series = load_series(cfg.tariff.prices_file, "ts_utc", ["eur_per_mwh"])
    lines = ["ts_utc,eur_per_mwh"]
    for ts, price in zip(series.ts, series.columns["eur_per_mwh"], strict=True):
        if ts.year >= 2025 and price is not None:
            lines.append(f"{ts.strftime('%Y-%m-%dT%H:%M:%SZ')},{price}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("year", ["shipped", "2025"])
def test_the_planner_earns_most_of_the_online_bound_and_beats_every_simple_policy(tmp_path,
                                                                                   year):
    prices = str(later_year(tmp_path / "2025.csv")) if year == "2025" else None
    cfg = scenario(str(ROOT / "scenarios/owner-8gpu.toml"), prices=prices, days=DAYS)
    cfg = replace(cfg, simulation=replace(cfg.simulation, start=START))
    site = load_site(cfg)
    results = {name: simulate(cfg, site, POLICIES[name](cfg, site), name)
               for name in ("planner", *SIMPLE)}
    planner = results["planner"]
    assert planner.revenue >= 0.95 * online_revenue_bound(cfg)
    for name in SIMPLE:
        assert planner.profit > results[name].profit, name
