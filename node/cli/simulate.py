"""`sunrig simulate` and `sunrig bench economics`: a scenario's year, by policy."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from node.config import Config, default_config, load_config
from node.planning.economics import (
    STEP_H,
    Result,
    load_site,
    local_gpus_over,
    period_starts,
    simulate,
)
from node.planning.online_bound import online_bound
from node.planning.policies import POLICIES
from node.wiring import sim_terms

BENCH_ORDER = ("planner", "always_sell", "solar_only", "cheapest_hours", "never_sell",
               "hindsight")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run a scenario's period on the simulated clock")
    p.add_argument("--scenario", help="a sunrig config with a [simulation] section "
                   "(default: the embedded demo)")
    p.add_argument("--policy", default="planner", choices=sorted(POLICIES))
    p.add_argument("--days", type=int, help="override [simulation] days")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_simulate)
    bench = sub.add_parser("bench", help="benchmarks")
    inner = bench.add_subparsers(required=True, metavar="economics")
    e = inner.add_parser("economics", help="profit of the planner, simple policies and "
                         "hindsight over the same period and order stream")
    e.add_argument("--scenario", help="a sunrig config with a [simulation] section")
    e.add_argument("--site", help="household CSV (ts_utc, load_w, pv_w) replacing the scenario's")
    e.add_argument("--prices", help="day-ahead CSV (ts_utc, eur_per_mwh) replacing the "
                   "scenario's tariff; another year's prices are moved onto the simulated "
                   "dates by whole weeks (same weekday and hour)")
    e.add_argument("--days", type=int)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_bench)


def scenario(path: str | None, site: str | None = None, prices: str | None = None,
             days: int | None = None) -> Config:
    cfg = load_config(path) if path else default_config()
    if site:
        sim = replace(cfg.energy.simulated, data_file=str(Path(site).resolve()))
        cfg = replace(cfg, energy=replace(cfg.energy, simulated=sim))
    if prices:  # a scenario on a fixed tariff gets day-ahead prices with its formulas
        cfg = replace(cfg, tariff=replace(cfg.tariff, kind="day_ahead",
                                          prices_file=str(Path(prices).resolve())))
    if days:
        cfg = replace(cfg, simulation=replace(cfg.simulation, days=days))
    return cfg


def cmd_simulate(args: argparse.Namespace) -> int:
    cfg = scenario(args.scenario, days=args.days)
    site = load_site(cfg)
    progress = Progress(sys.stderr.write) if sys.stderr.isatty() else None
    result = simulate(cfg, site, POLICIES[args.policy](cfg, site), args.policy, progress)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    _print_result(cfg, result)
    return 0


class Progress:
    """A bar with the share done and the time left, redrawn in place at most every
    `every_s`; the ETA is the time so far scaled to what is left (a year's steps cost alike)."""

    WIDTH = 30

    def __init__(self, write: Callable[[str], object], every_s: float = 0.25,
                 clock: Callable[[], float] = time.monotonic):
        self.write, self.every_s, self.clock = write, every_s, clock
        self.started = self.drawn = clock()

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        finished = done >= total
        if not finished and now - self.drawn < self.every_s:
            return
        self.drawn = now
        self.write("\r" + self.line(done, total, now - self.started)
                   + ("\n" if finished else ""))

    def line(self, done: int, total: int, elapsed_s: float) -> str:
        share = done / total if total else 1.0
        bar = "#" * round(share * self.WIDTH)
        per_day = 24 / STEP_H
        days = f"{done / per_day:.0f}/{total / per_day:.0f} days"
        if done >= total:
            return f"[{bar:<{self.WIDTH}}] 100% {days} in {_clock(elapsed_s)}"
        left = elapsed_s / done * (total - done) if done else None
        eta = "ETA --:--" if left is None else f"ETA {_clock(left)}"
        return f"[{bar:<{self.WIDTH}}] {share:4.0%} {days}, {eta}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def run_policy(cfg: Config, name: str) -> Result:
    site = load_site(cfg)
    policy = POLICIES[name](cfg, site)
    result = simulate(cfg, site, policy, name)
    solver = getattr(policy, "hindsight", None)
    if solver is not None:
        result.solver_gap = solver.gap
    return result


def run_bench(cfg: Config, workers: int | None = None) -> dict[str, Result]:
    """Every policy over the same period; the slow ones (hindsight, planner) run side by side."""
    workers = workers or min(len(BENCH_ORDER), os.cpu_count() or 1)
    if workers <= 1:
        return {name: run_policy(cfg, name) for name in BENCH_ORDER}
    with ProcessPoolExecutor(workers) as pool:
        futures = {name: pool.submit(run_policy, cfg, name)
                   for name in ("hindsight", "planner", *BENCH_ORDER) if name in BENCH_ORDER}
        return {name: futures[name].result() for name in BENCH_ORDER}


def cmd_bench(args: argparse.Namespace) -> int:
    cfg = scenario(args.scenario, args.site, args.prices, args.days)
    t0 = time.perf_counter()
    results = run_bench(cfg)
    if args.json:
        print(json.dumps(bench_figures(cfg, results)))
        return 0
    print_table(cfg, results, time.perf_counter() - t0)
    return 0


def bench_figures(cfg: Config, results: dict[str, Result]) -> dict:
    """Per policy, revenue, the rig's energy cost, what leases left the owner short and profit,
    in the site currency; hindsight stays among them as the ceiling no seller reaches, and
    `online_bound` is the revenue no seller posting its floor before the orders come can beat on
    the GPUs the owner leaves free (`online_bound_all_free`: as if every hour had the fewest
    reserved)."""
    doc: dict = {name: {"revenue": round(r.revenue, 2), "energy_cost": round(r.rig_energy_cost, 2),
                        "local_shortfall_cost": round(r.local_shortfall_cost, 2),
                        "profit": round(r.profit, 2), "currency": cfg.site.currency}
                 for name, r in results.items()}
    doc["online_bound"] = round(online_revenue_bound(cfg), 2)
    doc["online_bound_all_free"] = round(online_revenue_bound_all_free(cfg), 2)
    return doc


def print_table(cfg: Config, results: dict[str, Result], seconds: float) -> None:
    cur = cfg.site.currency
    print(f"{cfg.site.name}: {cfg.simulation.days} days from {cfg.simulation.start}, "
          f"{cfg.gpus.simulated.count} GPUs ({seconds:.0f} s)")
    print(f"{'policy':16}{'profit':>12}{'revenue':>12}{'energy':>10}{'short':>8}{'util':>7}"
          f"{'leases':>8}{'avg price':>11}")
    for name, r in results.items():
        avg = r.revenue / r.leased_gpu_hours if r.leased_gpu_hours else 0.0
        print(f"{name:16}{r.profit:12,.0f}{r.revenue:12,.0f}{r.rig_energy_cost:10,.0f}"
              f"{r.local_shortfall_cost:8,.0f}{r.utilization:7.0%}{r.leases:8d}{avg:11.3f}")
    best_simple = max(r.profit for n, r in results.items() if n not in ("planner", "hindsight"))
    planner, hindsight = results["planner"].profit, results["hindsight"].profit
    print(f"planner / best simple policy: {planner / best_simple:.3f}   "
          f"planner / hindsight: {planner / hindsight:.3f}   ({cur}; hindsight within "
          f"{results['hindsight'].solver_gap:.2%} of its optimum)")
    bound, all_free = online_revenue_bound(cfg), online_revenue_bound_all_free(cfg)
    print(f"online bound: no policy that posts its floor before the orders come can earn more "
          f"than {bound:,.0f} {cur} of revenue on the GPUs the owner leaves free; planner "
          f"{results['planner'].revenue / bound:.3f} of it, hindsight "
          f"{results['hindsight'].revenue / bound:.3f} (with the fewest reserved at all hours: "
          f"{all_free:,.0f}, planner {results['planner'].revenue / all_free:.3f})")


def online_revenue_bound(cfg: Config) -> float:
    """The online optimum's revenue over the period: at each step, the bound's revenue rate on
    the GPUs the owner leaves free then. GPU-hours the owner reserves are for no seller, so a
    bound that counted them would measure the reservation, not the selling."""
    free = cfg.gpus.simulated.count - local_gpus_over(cfg, period_starts(cfg))
    return _bound_over(cfg, free)


def online_revenue_bound_all_free(cfg: Config) -> float:
    """The same bound on every GPU the owner ever leaves free, at all hours: the reservation's
    windows counted as if they were for sale."""
    fewest = min([cfg.local.reserved_gpus, *(w.gpus for w in cfg.local.schedule)])
    capacity = max(0, cfg.gpus.simulated.count - fewest)
    return _bound_over(cfg, np.full(cfg.simulation.days * 96, capacity))


def _bound_over(cfg: Config, free_gpus: np.ndarray) -> float:
    terms = sim_terms(cfg)
    capacities, steps = np.unique(np.maximum(free_gpus, 0), return_counts=True)
    return sum(online_bound(terms, int(c)).revenue_per_hour * int(n) * STEP_H
               for c, n in zip(capacities.tolist(), steps.tolist(), strict=True))


def _print_result(cfg: Config, r: Result) -> None:
    d = r.as_dict()
    cur = cfg.site.currency
    print(f"{cfg.site.name}: {cfg.simulation.days} days from {cfg.simulation.start}, policy "
          f"{r.policy}")
    print(f"  revenue            {r.revenue:14,.2f} {cur}")
    print(f"  rig energy cost    {r.rig_energy_cost:14,.2f} {cur}  " + ", ".join(
        f"{k} {v:,.0f}" for k, v in d["energy_cost_by_role"].items()))
    print("  rig energy         " + ", ".join(
        f"{k} {v:,.0f} kWh" for k, v in d["rig_kwh_by_source"].items()))
    print(f"  profit             {r.profit:14,.2f} {cur}   OpEx {r.opex:,.2f} {cur}")
    print(f"  utilization        {r.utilization:14.1%}   leases {r.leases}")
    years, when = r.payback()
    print(f"  CapEx {r.capex:,.0f} {cur}: " + (f"paid back in {years} years, on {when}"
                                            if years else "not paid back at this pace"))
