"""The hindsight optimum: the most a single-floor offer could have earned, knowing everything.

It knows the period's prices, PV, house load and every tenant order (arrival, GPUs, maximum price,
duration). Under the market's rule (orders in arrival order each take the offer when they fit and
their maximum covers the floor, and pay the floor), a step's choice of floor and free GPUs takes a
known set of orders. The MILP picks at most one such option per 15-minute step so that running
leases, the owner's GPUs and the breaker fit in every step, with the site's grid balance and
battery paid at import and feed-in prices. The period is solved a block at a time (a week) with
some look-ahead; the leases a block commits run on into the next, as fixed load and occupancy.
Because each option is realized exactly by the market's rule, the simulated revenue of the
hindsight policy is the revenue this program planned.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from market_adapter.sim import Order, order_takes_offer
from node.config import Config
from node.gpus import WORKLOAD_UTIL
from node.planning.economics import STEP_H, Decision, Policy, Site, State, floor_of
from node.planning.milp import rows_constraint

BATTERY_EFFICIENCY = 0.95


@dataclass(frozen=True)
class Option:
    """Offer `free_gpus` at `floor` (site currency) in `step`: these orders become leases."""

    step: int
    floor: float
    free_gpus: int
    leases: tuple[tuple[int, float, float], ...]  # GPUs, start and end in hours from step 0


def step_options(orders: list[Order], step: int, model: str, max_free: int, rate: float,
                 min_floor: float, first: datetime) -> list[Option]:
    """Every distinct outcome of one step's orders: for each floor (an order's maximum price)
    and each number of free GPUs, the orders the market rule lets through; for the same leases,
    the highest floor and then the fewest free GPUs."""
    found: dict[tuple[str, ...], Option] = {}
    for price in sorted({o.max_price_per_gpu_hour for o in orders if o.model == model}):
        if price * rate < min_floor:
            continue
        # the market turns the floor back into its own currency: stay a hair under the price
        floor_market = price * (1 - 1e-12)
        floor_site = floor_market * rate
        for free in range(1, max_free + 1):
            left, taken = free, []
            for order in orders:
                if order_takes_offer(order, model, left, floor_market):
                    left -= order.gpus
                    taken.append(order)
            key = tuple(o.order_id for o in taken)
            best = found.get(key)
            if taken and (best is None or (floor_site, -free) > (best.floor, -best.free_gpus)):
                found[key] = Option(step, floor_site, free, tuple(
                    (o.gpus, _h(o.arrival - first), _h(o.arrival - first + o.duration))
                    for o in taken))
    return list(found.values())


def _h(delta: timedelta) -> float:
    return delta.total_seconds() / 3600.0


class Hindsight:
    """Solves the period block by block and answers each step's decision."""

    def __init__(self, cfg: Config, site: Site, block_days: int = 7, lookahead_hours: int = 24,
                 time_limit_s: float = 10.0):
        self.cfg, self.site = cfg, site
        self.block, self.lookahead = block_days * 96, lookahead_hours * 4
        self.time_limit_s = time_limit_s
        g, sc = cfg.gpus.simulated, cfg.site
        park_w = min(g.idle_w, g.min_power_limit_w)
        lease_w = g.idle_w + (g.busy_w - g.idle_w) * WORKLOAD_UTIL["lease"]
        local_w = g.idle_w + (g.busy_w - g.idle_w) * WORKLOAD_UTIL["local"]
        self.extra_w_per_gpu = (lease_w - park_w) * sc.cooling_factor
        local = site.local_gpus.astype(float)
        self.base_w = site.load_w - site.pv_w + (
            sc.host_overhead_w + local * local_w + (g.count - local) * park_w) * sc.cooling_factor
        by_breaker = np.floor((sc.breaker_limit_w - site.load_w - (
            sc.host_overhead_w + local * g.busy_w) * sc.cooling_factor)
            / (g.busy_w * sc.cooling_factor))
        self.room = np.maximum(0, np.minimum(g.count - local, by_breaker)).astype(int)
        self.imports = site.import_per_kwh
        self.exports = np.minimum(site.export_per_kwh, site.import_per_kwh)
        # a lease's draw beyond a block's horizon is priced at that step's marginal price
        self.marginal = np.where(self.base_w + self.extra_w_per_gpu <= 0, self.exports,
                                 self.imports)
        s, min_floor = cfg.markets.sim, floor_of(cfg)
        self.options = [step_options(orders, k, g.model, int(self.room[k]), s.currency_rate,
                                     min_floor, site.starts[0])
                        for k, orders in enumerate(site.orders)]
        self.held = np.zeros(site.steps, dtype=int)  # GPUs of committed leases at step starts
        self.extra_w = np.zeros(site.steps)  # their extra draw per step, cooling included
        self.chosen: dict[int, Option] = {}
        self.planned_revenue = 0.0
        # blocks stopped by the time limit: the best objective found and the solver's bound
        self.objective, self.bound = 0.0, 0.0

    @property
    def gap(self) -> float:
        """How much better than the plan found the optimum could be, over the whole period."""
        return max(0.0, self.bound - self.objective) / abs(self.bound) if self.bound else 0.0

    def decide(self, st: State) -> Decision:
        if st.step % self.block == 0:
            self._solve_block(st.step, st.battery_soc_wh)
        option = self.chosen.get(st.step)
        if option is None:
            return Decision(st.leased_gpus, floor_of(self.cfg))
        return Decision(st.leased_gpus + option.free_gpus, option.floor)

    def profile(self, opt: Option) -> tuple[int, np.ndarray, np.ndarray]:
        """From the option's step on: GPUs its leases hold at each step's start (not in its own
        step, where its free GPUs count) and their extra draw by the part of each step run."""
        end_h = min(max(e for _, _, e in opt.leases), self.site.steps * STEP_H)
        span = max(1, math.ceil(end_h / STEP_H - 1e-9) - opt.step)
        held, extra = np.zeros(span, dtype=int), np.zeros(span)
        edges = (opt.step + np.arange(span + 1)) * STEP_H
        for gpus, start_h, lease_end_h in opt.leases:
            held[1:] += gpus * (lease_end_h > edges[1:-1])
            run = np.minimum(lease_end_h, edges[1:]) - np.maximum(start_h, edges[:-1])
            extra += gpus * np.clip(run, 0.0, None) / STEP_H * self.extra_w_per_gpu
        return opt.step, held, extra

    def revenue(self, opt: Option) -> float:
        period_h = self.site.steps * STEP_H
        return sum(g * opt.floor * max(0.0, min(e, period_h) - s) for g, s, e in opt.leases)

    def _solve_block(self, b0: int, soc_wh: float) -> None:
        b1 = min(b0 + self.block, self.site.steps)
        b2 = min(b1 + self.lookahead, self.site.steps)
        opts = [o for k in range(b0, b2) for o in self.options[k]]
        profiles = [self.profile(o) for o in opts]
        model = _block_model(self, b0, b2, opts, profiles, soc_wh)
        from scipy.optimize import milp  # the solver is loaded when hindsight first solves

        with _quiet_stdout():
            res = milp(model["c"], integrality=model["integrality"], bounds=model["bounds"],
                       constraints=model["constraints"],
                       options={"time_limit": self.time_limit_s, "mip_rel_gap": 2e-3})
        if res.x is None:
            return  # no solution: offer nothing new in this block
        self.objective += -res.fun
        self.bound += -float(getattr(res, "mip_dual_bound", res.fun))
        for i, (opt, (k0, held, extra)) in enumerate(zip(opts, profiles, strict=True)):
            if opt.step < b1 and res.x[i] > 0.5:
                self.chosen[opt.step] = opt
                self.planned_revenue += self.revenue(opt)
                self.held[k0:k0 + len(held)] += held
                self.extra_w[k0:k0 + len(extra)] += extra


def _block_model(h: Hindsight, b0: int, b2: int, opts: list[Option], profiles: list,
                 soc_wh: float) -> dict:
    """Variables: one binary per option, then per step import, export, charge, discharge and
    state of charge (W and Wh). Minimises the block's energy cost minus lease revenue."""
    n_opt, steps = len(opts), b2 - b0
    n = n_opt + 5 * steps
    var = lambda t, j: n_opt + 5 * (t - b0) + j  # noqa: E731 - j: 0 imp 1 exp 2 ch 3 dis 4 soc
    c, lo, hi = np.zeros(n), np.zeros(n), np.full(n, np.inf)
    integrality = np.zeros(n)
    integrality[:n_opt], hi[:n_opt] = 1, 1
    rows: list[tuple[list[tuple[int, float]], float, float]] = []
    per_step: dict[int, list[int]] = {}
    held_rows = [[] for _ in range(steps)]
    draw_rows = [[] for _ in range(steps)]
    for i, (opt, (k0, held, extra)) in enumerate(zip(opts, profiles, strict=True)):
        per_step.setdefault(opt.step, []).append(i)
        c[i] = -h.revenue(opt)
        held_rows[opt.step - b0].append((i, float(opt.free_gpus)))
        for j in range(1, len(held)):
            if k0 + j < b2 and held[j]:
                held_rows[k0 + j - b0].append((i, float(held[j])))
        inside = min(len(extra), b2 - k0)
        for j in range(inside):
            draw_rows[k0 + j - b0].append((i, -extra[j]))
        c[i] += float(extra[inside:] @ h.marginal[k0 + inside:k0 + len(extra)]) * STEP_H / 1000
    for idx in per_step.values():
        rows.append(([(i, 1.0) for i in idx], -np.inf, 1.0))  # one floor per step
    bat = h.cfg.energy.simulated.battery
    cap_wh = bat.capacity_kwh * 1000.0
    min_wh = cap_wh * bat.min_soc_pct / 100.0
    eff = BATTERY_EFFICIENCY
    for t in range(b0, b2):
        room = max(0, int(h.room[t]) - int(h.held[t]))
        if held_rows[t - b0]:
            rows.append((held_rows[t - b0], -np.inf, float(room)))
        c[var(t, 0)] = h.imports[t] * STEP_H / 1000.0
        c[var(t, 1)] = -h.exports[t] * STEP_H / 1000.0
        fixed = float(h.base_w[t] + h.extra_w[t])
        rows.append(([(var(t, 0), 1.0), (var(t, 1), -1.0), (var(t, 2), -1.0), (var(t, 3), 1.0)]
                     + draw_rows[t - b0], fixed, fixed))
        if cap_wh > 0:
            hi[var(t, 2)], hi[var(t, 3)] = bat.max_charge_w, bat.max_discharge_w
            lo[var(t, 4)], hi[var(t, 4)] = min_wh, cap_wh
            prev = [(var(t - 1, 4), -1.0)] if t > b0 else []
            start = 0.0 if t > b0 else min(max(soc_wh, min_wh), cap_wh)
            rows.append(([(var(t, 4), 1.0), (var(t, 2), -eff * STEP_H),
                          (var(t, 3), STEP_H / eff)] + prev, start, start))
        else:
            hi[var(t, 2)] = hi[var(t, 3)] = hi[var(t, 4)] = 0.0
    if cap_wh > 0:  # leave the battery as full as it was found
        lo[var(b2 - 1, 4)] = min(max(soc_wh, min_wh), cap_wh)
    from scipy.optimize import Bounds

    return {"c": c, "integrality": integrality, "bounds": Bounds(lo, hi),
            "constraints": [rows_constraint(rows, n)]}


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """HiGHS prints solver notes straight to file descriptor 1 when a time limit stops a
    search; they would break `--json` output."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def hindsight_policy(cfg: Config, site: Site) -> Policy:
    sim = cfg.simulation
    solver = Hindsight(cfg, site, sim.hindsight_block_days, sim.hindsight_lookahead_hours)

    def decide(st: State) -> Decision:
        return solver.decide(st)
    decide.hindsight = solver  # type: ignore[attr-defined] - tests compare planned and booked
    return decide
