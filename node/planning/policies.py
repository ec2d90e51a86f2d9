"""Selling policies for the economics simulation: the planner, simple rules, and hindsight.

- planner: the MILP planner re-planning every few hours with what is known then: day-ahead prices
  as far as they are published, PV and house load forecast from the past week's same time of day,
  running leases expected to decay, the market's demand model;
- always_sell: every GPU the owner does not reserve, at the market's ask;
- solar_only: only while the PV surplus covers the GPUs' draw (evcc's PV mode), at the ask;
- cheapest_hours: every free GPU in the cheaper half of each day's hours, at the ask;
- never_sell: nothing;
- hindsight: a MILP knowing the period's prices, PV, load and every order, choosing each step's
  floor and offer order by order, a week at a time (node/planning/hindsight.py): the bound to
  measure by.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from energy.types import PriceSlot
from node.config import Config
from node.planning.economics import (
    STEP,
    STEP_H,
    Decision,
    Policy,
    Site,
    State,
    floor_of,
    site_battery_state,
)
from node.planning.hindsight import hindsight_policy
from node.planning.milp import MilpPlanner
from node.planning.planner import (
    FillCalibration,
    MarketTerms,
    Plan,
    PlanInputs,
    shortfall_price,
)
from node.wiring import sim_terms

PUBLISHED_HOUR = 13  # day-ahead prices for tomorrow are known from about 13:00 local time


def always_sell(cfg: Config, site: Site) -> Policy:
    floor, n = floor_of(cfg), cfg.gpus.simulated.count
    return lambda st: Decision(n - int(site.local_gpus[st.step]), floor)


def never_sell(cfg: Config, site: Site) -> Policy:
    return lambda st: Decision(0, floor_of(cfg))


def solar_only(cfg: Config, site: Site) -> Policy:
    floor, g, c = floor_of(cfg), cfg.gpus.simulated, cfg.site.cooling_factor

    def decide(st: State) -> Decision:
        k = st.step
        surplus_w = site.pv_w[k] - site.load_w[k] - st.rig_w
        extra = max(0, math.floor(surplus_w / ((g.busy_w - g.idle_w) * c)))
        return Decision(st.leased_gpus + extra, floor)
    return decide


def cheapest_hours(cfg: Config, site: Site) -> Policy:
    floor, n = floor_of(cfg), cfg.gpus.simulated.count
    cheap = np.zeros(site.steps, dtype=bool)
    for day in range(0, site.steps, 96):
        prices = site.import_per_kwh[day:day + 96]
        cheap[day:day + 96] = prices <= np.median(prices)
    return lambda st: Decision(n - int(site.local_gpus[st.step]) if cheap[st.step] else 0, floor)


def planner_policy(cfg: Config, site: Site) -> Policy:
    sim = cfg.simulation
    planner = MilpPlanner(sim.horizon_hours, sim.slot_minutes)
    every = max(1, round(sim.replan_hours * 4))
    tz = ZoneInfo(cfg.site.timezone)
    terms = sim_terms(cfg)
    fills = FillCalibration.for_terms(terms)
    current: dict[str, Plan | None] = {"plan": None}

    def decide(st: State) -> Decision:
        now = site.starts[st.step]
        if st.step > 0 and st.offered_last_step > 0:
            # learn how the market's fill compares with the model's: GPUs leased in the last
            # step against what its orders should have taken from the GPUs free then
            fills.record(terms.expected_gpus_started(st.floor_last_step, st.offered_last_step,
                                                     STEP_H), st.started_last_step, STEP_H)
        if st.step % every == 0 or current["plan"] is None:
            seen = replace(terms, orders_per_hour=terms.orders_per_hour * fills.factor)
            current["plan"] = planner.plan(now, _inputs(cfg, site, st, seen, _published_until(
                now, tz), forecast=True))
        return _from_plan(current["plan"], now, cfg)
    decide.planner = planner  # type: ignore[attr-defined] - the bench reads its solve times
    return decide


POLICIES: dict[str, Callable[[Config, Site], Policy]] = {
    "planner": planner_policy, "always_sell": always_sell, "solar_only": solar_only,
    "cheapest_hours": cheapest_hours, "never_sell": never_sell, "hindsight": hindsight_policy,
}


def _from_plan(plan: Plan, now: datetime, cfg: Config) -> Decision:
    slot = plan.slot_at(now)
    if slot is None:  # nothing known: offer nothing new
        return Decision(0, floor_of(cfg))
    return Decision(slot.offered.get("sim", 0), slot.floor_per_gpu_hour["sim"])


def _published_until(now: datetime, tz: ZoneInfo) -> datetime:
    local = now.astimezone(tz)
    days = 2 if local.hour >= PUBLISHED_HOUR else 1
    return datetime.combine(local.date() + timedelta(days=days), datetime.min.time(), tz)


def _inputs(cfg: Config, site: Site, st: State, terms: MarketTerms, known_until: datetime,
            forecast: bool) -> PlanInputs:
    k0, now = st.step, site.starts[st.step]
    end = min(known_until, site.starts[-1] + STEP)
    n_known = max(1, int((end - now) / STEP))
    prices = [PriceSlot(site.starts[k], site.starts[k] + STEP, float(site.import_per_kwh[k]),
                        float(site.export_per_kwh[k])) for k in range(k0, k0 + n_known)]
    pv, load = (_profile(site.pv_w, k0), _profile(site.load_w, k0)) if forecast else (
        site.pv_w, site.load_w)
    g, bat, s = cfg.gpus.simulated, cfg.energy.simulated.battery, cfg.site

    def at(series: np.ndarray) -> Callable[[datetime], float]:
        def value(ts: datetime) -> float:
            k = int((ts - site.starts[0]) / STEP)
            window = series[k:k + round(cfg.simulation.slot_minutes / 15)]
            return float(window.mean()) if len(window) else 0.0
        return value

    decay_h = terms.mean_lease_hours
    return PlanInputs(
        gpu_count=g.count,
        local_gpus_at=lambda ts: int(site.local_gpus[min(int((ts - site.starts[0]) / STEP),
                                                         site.steps - 1)]),
        prices=prices, markets={"sim": terms}, gpu_busy_w=g.busy_w,
        gpu_min_limit_w=g.idle_w, host_overhead_w=s.host_overhead_w,
        cooling_factor=s.cooling_factor, breaker_limit_w=s.breaker_limit_w,
        house_load_w=float(site.load_w[k0]), exporting_now=False,
        wear_per_gpu_hour=cfg.planner.wear_per_gpu_hour,
        margin_per_gpu_hour=cfg.planner.margin_per_gpu_hour,
        min_floor_per_gpu_hour=cfg.planner.min_floor_per_gpu_hour,
        expected_lease_hours=decay_h, pv_w_at=at(pv), house_w_at=at(load),
        battery=None if bat.capacity_kwh <= 0 else site_battery_state(bat, st.battery_soc_wh),
        leased_gpus_at=lambda m, ts: st.leased_gpus * math.exp(
            -max(0.0, (ts - now).total_seconds()) / 3600.0 / decay_h),
        shortfall_per_gpu_hour=shortfall_price(cfg.local.reservation, {"sim": terms}))


def _profile(series: np.ndarray, k0: int, days: int = 7) -> np.ndarray:
    """A forecast from the past only: each future step is the mean of the same time of day over
    the last `days` days before k0 (the first day repeats the last value seen)."""
    out = series.copy()
    past = [series[max(0, k0 - 96 * d):k0 - 96 * (d - 1)] for d in range(1, days + 1)
            if k0 - 96 * d >= 0]
    if not past:
        out[k0:] = series[k0]
        return out
    day = np.mean(past, axis=0)
    horizon = len(series) - k0
    out[k0:] = np.tile(day, horizon // 96 + 1)[:horizon]
    return out
