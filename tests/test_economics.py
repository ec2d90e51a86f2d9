"""The economics simulation: same site, prices and orders for every policy; CLI outputs."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from market_adapter.sim import Order
from node.cli.commands import main
from node.cli.simulate import BENCH_ORDER, online_revenue_bound, scenario
from node.config import default_config, load_config
from node.planning.economics import Decision, load_site, simulate
from node.planning.hindsight import step_options
from node.planning.policies import POLICIES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def june():
    cfg = default_config()
    cfg = replace(cfg, simulation=replace(cfg.simulation, start="2024-06-10", days=3))
    return cfg, load_site(cfg)


def test_the_site_is_the_real_trace_and_prices(june):
    cfg, site = june
    assert site.steps == 3 * 96
    assert site.pv_w.max() > 15000  # 30 kWp in June
    assert site.import_per_kwh.min() < site.import_per_kwh.max()
    assert sum(len(o) for o in site.orders) > 100  # about 4 orders an hour


def test_never_selling_earns_nothing_and_pays_the_idle_rig(june):
    cfg, site = june
    r = simulate(cfg, site, POLICIES["never_sell"](cfg, site), "never_sell")
    assert r.revenue == 0 and r.leases == 0 and r.rig_energy_cost > 0
    assert r.cost_by_role["market_leased"] == 0


def test_orders_follow_the_market_rule(june):
    cfg, site = june
    high = simulate(cfg, site, lambda st: Decision(8, 100.0), "too dear")
    assert high.leases == 0  # nobody pays 100 per GPU-hour
    cheap = simulate(cfg, site, lambda st: Decision(8, 0.5), "cheap")
    assert cheap.leases > 0
    assert cheap.revenue / cheap.leased_gpu_hours == pytest.approx(0.5)
    assert cheap.utilization <= 1.0


def test_every_policy_runs_and_the_planner_beats_the_simple_ones(june):
    cfg, site = june
    results = {n: simulate(cfg, site, POLICIES[n](cfg, site), n) for n in BENCH_ORDER}
    simple = ("always_sell", "solar_only", "cheapest_hours", "never_sell")
    assert results["planner"].profit > max(results[n].profit for n in simple)
    kwh = results["planner"].kwh_by_source
    assert kwh["pv"] > 0 and kwh["grid"] > 0


def test_simulate_cli_prints_the_year_figures(capsys):
    assert main(["simulate", "--days", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["policy"] == "planner" and doc["revenue"] > 0
    assert set(doc["energy_cost_by_role"]) == {"market_leased", "market_idle", "local",
                                                "parked", "host"}
    assert doc["payback_years"] is None or doc["payback_years"] > 0


def test_bench_economics_json_gives_every_policys_money_and_the_online_bound(capsys):
    args = ["bench", "economics", "--scenario", str(ROOT / "scenarios/owner-8gpu.toml"),
            "--days", "2", "--json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["planner", "always_sell", "solar_only", "cheapest_hours",
                         "never_sell", "hindsight", "online_bound", "online_bound_all_free"]
    for name in BENCH_ORDER:
        r = doc[name]
        assert r["currency"] == "EUR"
        assert r["profit"] == pytest.approx(r["revenue"] - r["energy_cost"]
                                            - r["local_shortfall_cost"], abs=0.03)
        assert r["energy_cost"] > 0  # the idle rig draws even when nothing sells
    assert doc["never_sell"]["revenue"] == 0
    # no seller posting its floor first earns more than the bound; hindsight is no such seller
    cfg = scenario(str(ROOT / "scenarios/owner-8gpu.toml"), days=2)
    assert doc["online_bound"] == pytest.approx(online_revenue_bound(cfg), abs=0.01)
    assert doc["always_sell"]["revenue"] < doc["online_bound"] < doc["hindsight"]["revenue"]
    assert doc["online_bound"] <= doc["online_bound_all_free"]


def _price_file(path: Path, first: datetime, days: int) -> Path:
    """Hourly day-ahead prices that name their own weekday and UTC hour: 100 x weekday + hour
    EUR/MWh, so a price read off the file says which hour of which weekday it came from."""
    lines = ["ts_utc,eur_per_mwh"]
    for h in range(days * 24):
        ts = first + timedelta(hours=h)
        lines.append(f"{ts.strftime('%Y-%m-%dT%H:%M:%SZ')},{100 * ts.weekday() + ts.hour}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("year", [2019, 2022, 2023, 2025, 2026])
@pytest.mark.parametrize("replay", [True, False])
def test_prices_of_another_year_keep_their_weekday_and_hour(tmp_path, year, replay):
    prices = _price_file(tmp_path / f"{year}.csv", datetime(year, 1, 1, tzinfo=UTC), 365)
    cfg = scenario(str(ROOT / "scenarios/owner-8gpu.toml"), prices=str(prices))
    cfg = replace(cfg, simulation=replace(cfg.simulation, start="2024-06-10", days=3),
                  tariff=replace(cfg.tariff, replay=replay))
    site = load_site(cfg)
    for k in range(0, site.steps, 7):
        ts = site.starts[k].astimezone(UTC)
        spot = (100 * ts.weekday() + ts.hour) / 1000.0
        assert site.import_per_kwh[k] == pytest.approx((spot + 0.02 + 0.1088) * 1.21)


def test_another_years_prices_land_on_about_the_same_day_of_the_year():
    from node.planning.economics import year_shift
    june = datetime(2024, 6, 10, tzinfo=UTC)
    for year in (2021, 2023, 2025, 2027):
        first = datetime(year, 1, 1, tzinfo=UTC)
        shift = year_shift(june, june + timedelta(days=364), first, first + timedelta(days=365))
        assert shift % timedelta(weeks=1) == timedelta(0)
        assert abs((june + shift).replace(year=2024) - june) <= timedelta(days=7)
    # prices covering the period are used as they are
    assert year_shift(june, june + timedelta(days=3), june, june + timedelta(days=3)) == (
        timedelta(0))


def test_prices_that_cannot_cover_the_period_are_named_not_guessed(tmp_path):
    from energy.series import SeriesError
    prices = _price_file(tmp_path / "short.csv", datetime(2023, 6, 1, tzinfo=UTC), 20)
    cfg = scenario(str(ROOT / "scenarios/owner-8gpu.toml"), prices=str(prices))
    cfg = replace(cfg, simulation=replace(cfg.simulation, start="2024-06-10", days=30))
    with pytest.raises(SeriesError, match="does not cover the simulated period"):
        load_site(cfg)


def test_prices_given_to_a_fixed_tariff_scenario_are_the_ones_simulated(tmp_path):
    prices = _price_file(tmp_path / "2023.csv", datetime(2023, 1, 1, tzinfo=UTC), 365)
    cfg = scenario(str(ROOT / "scenarios/seed-study-40gpu.toml"), prices=str(prices), days=2)
    site = load_site(cfg)
    assert cfg.tariff.kind == "day_ahead"
    assert len(set(site.import_per_kwh.round(6))) > 24  # an hourly price, not one fixed price


def test_shipped_scenarios_are_valid_configs():
    for path in (ROOT / "scenarios").glob("*.toml"):
        cfg = load_config(path)
        assert cfg.simulation.days == 364


def test_step_options_follow_the_market_rule():
    first = datetime(2024, 6, 10, tzinfo=UTC)
    big = Order("a", first, 2, "h200", 2.5, timedelta(hours=2))
    small = Order("b", first + timedelta(minutes=5), 1, "h200", 2.0, timedelta(hours=1))
    options = {(round(o.floor, 6), o.free_gpus): {g for g, _, _ in o.leases}
               for o in step_options([big, small], 0, "h200", 3, 1.0, 1.0, first)}
    # at 2.0 with one free GPU the big order does not fit and the small one takes it; with two
    # the big one takes both (the same lease as at 2.5, so only the dearer floor is kept)
    assert options == {(2.5, 2): {2}, (2.0, 1): {1}, (2.0, 3): {1, 2}}
    assert step_options([big, small], 0, "h200", 3, 1.0, 2.6, first) == []  # under the minimum


def test_hindsight_is_realized_exactly_and_bounds_every_policy(june):
    cfg, site = june
    policy = POLICIES["hindsight"](cfg, site)
    best = simulate(cfg, site, policy, "hindsight")
    assert best.revenue == pytest.approx(policy.hindsight.planned_revenue, rel=1e-9)
    assert best.local_shortfall_gpu_hours == 0  # the owner's GPUs are always free for them
    for name in ("planner", "always_sell", "solar_only", "cheapest_hours"):
        assert simulate(cfg, site, POLICIES[name](cfg, site), name).profit < best.profit


def test_a_lease_that_outlives_the_owners_free_time_is_charged(june):
    cfg, site = june
    sell_all = simulate(cfg, site, lambda st: Decision(8, 0.5), "cheap")
    assert sell_all.local_shortfall_gpu_hours > 0
    assert sell_all.profit == pytest.approx(sell_all.revenue - sell_all.rig_energy_cost
                                            - sell_all.local_shortfall_cost)


def test_the_online_bound_counts_only_the_gpus_the_owner_leaves_free_at_each_hour(june):
    from node.cli.simulate import online_revenue_bound, online_revenue_bound_all_free
    from node.planning.online_bound import online_bound
    from node.wiring import sim_terms

    cfg, site = june  # Monday to Wednesday: 2 GPUs the owner's from 08:00 to 18:00, else 1
    assert list(site.local_gpus).count(2) == 3 * 10 * 4
    rate = {n: online_bound(sim_terms(cfg), n).revenue_per_hour for n in (6, 7)}
    assert online_revenue_bound(cfg) == pytest.approx(rate[6] * 30 + rate[7] * 42)
    assert online_revenue_bound_all_free(cfg) == pytest.approx(rate[7] * 72)
    # three days is too short a sample for a bound on averages; still, selling every free GPU
    # at the ask earns less than what the best floor could
    always = simulate(cfg, site, POLICIES["always_sell"](cfg, site), "always_sell")
    assert always.revenue < online_revenue_bound(cfg)


def test_the_progress_bar_redraws_sparingly_and_its_eta_is_the_pace_so_far():
    from node.cli.simulate import Progress
    now = [0]
    out: list[str] = []
    bar = Progress(out.append, every_s=24, clock=lambda: now[0])
    for step in range(96 * 4):
        now[0] = step  # a second a step: four days of steps take 384 s
        bar(step, 96 * 4)
    assert len(out) == 15  # every 24 s, not once a step
    half = out[7]  # drawn at 192 s, half done
    assert half == "\r[" + "#" * 15 + " " * 15 + "]  50% 2/4 days, ETA 03:12"
    bar(96 * 4, 96 * 4)
    assert out[-1] == "\r[" + "#" * 30 + "] 100% 4/4 days in 06:23\n"


@pytest.mark.parametrize("terminal", [True, False])
def test_simulate_draws_its_progress_on_a_terminal_only(terminal):
    """A real terminal (a pseudo-terminal) gets the bar on stderr; a pipe gets none, and the
    figures on stdout are the same either way."""
    import os
    import pty
    import subprocess
    import sys
    if terminal:
        parent, child = pty.openpty()
        stderr = child
    else:
        stderr = subprocess.PIPE
    proc = subprocess.Popen([sys.executable, "-m", "node.cli", "simulate", "--days", "1",
                             "--json"], stdout=subprocess.PIPE, stderr=stderr)
    out, err = proc.communicate(timeout=600)
    if terminal:
        os.close(child)
        err = b""
        while True:
            try:
                chunk = os.read(parent, 65536)
            except OSError:  # the terminal's other end closed: all is read
                break
            if not chunk:
                break
            err += chunk
        os.close(parent)
    assert proc.returncode == 0 and json.loads(out)["policy"] == "planner"
    assert ("100% 1/1 days in" in err.decode()) is terminal
