"""A year of the rig in a few seconds: site, prices, the seeded order stream and a policy.

The simulation steps 15 minutes at a time over the real household trace and day-ahead prices.
Each step the policy says how many GPUs the market role holds and at what floor; tenants' orders
from the same seeded stream the simulated market uses meet that offer under the same rule (enough
free GPUs, the tenant's maximum covers the floor, the lease pays the floor); the rig's draw and the
house meet PV and the battery, and the grid settles the rest at import and feed-in prices.
The rig's energy cost is the site's grid cost with the rig minus without it, so every policy is
charged only for what the rig changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from energy.flows import shares_of
from energy.series import SeriesError, load_series
from energy.sim import SimulatedSite
from energy.tariff import DayAheadTariff
from energy.types import PriceSlot
from market_adapter.sim import Order, SimMarket, SimMarketSettings, order_takes_offer
from node.config import Config
from node.gpus import WORKLOAD_UTIL
from node.planning.planner import BatteryState, self_consumption_step
from node.roles import reserved_local_gpus
from node.wiring import tariff_for

STEP = timedelta(minutes=15)
STEP_H = 0.25
WEEK = timedelta(weeks=1)
YEAR = timedelta(days=365.2425)


@dataclass
class Site:
    """Per-step arrays over the simulated period: what the policies may look at."""

    starts: list[datetime]
    pv_w: np.ndarray
    load_w: np.ndarray
    import_per_kwh: np.ndarray
    export_per_kwh: np.ndarray
    local_gpus: np.ndarray
    orders: list[list[Order]]  # per step, in arrival order

    @property
    def steps(self) -> int:
        return len(self.starts)


def load_site(cfg: Config, start: date | None = None, days: int | None = None) -> Site:
    starts = period_starts(cfg, start, days)
    first = starts[0]
    es = cfg.energy.simulated
    trace = SimulatedSite(es.data_file, es.pv_array_kwp / es.trace_array_kwp, None, 0.0,
                          lambda: 0.0)
    samples = [trace.read(ts + STEP / 2) for ts in starts]
    imp, exp = _per_step(starts, _price_slots(cfg, first, starts[-1] + STEP))
    return Site(starts, np.array([s.pv_w or 0.0 for s in samples]),
                np.array([s.load_w or 0.0 for s in samples]), imp, exp,
                local_gpus_over(cfg, starts), _orders(cfg, starts))


def period_starts(cfg: Config, start: date | None = None, days: int | None = None
                  ) -> list[datetime]:
    """The simulated period's 15-minute steps, from local midnight of its first day."""
    sim = cfg.simulation
    first = datetime.combine(start or date.fromisoformat(sim.start), datetime.min.time(),
                             ZoneInfo(cfg.site.timezone))
    return [first + k * STEP for k in range((days or sim.days) * 96)]


def local_gpus_over(cfg: Config, starts: list[datetime]) -> np.ndarray:
    """Per step, the GPUs the owner reserves then (never more than the rig has), within
    [inference] min/max local GPUs where local inference runs, as the agent keeps them."""
    tz = ZoneInfo(cfg.site.timezone)
    inference = cfg.inference
    bounds = (inference.min_local_gpus, inference.max_local_gpus) if inference.enabled else None
    return np.array([min(reserved_local_gpus(cfg.local, ts.astimezone(tz), 0, bounds),
                         cfg.gpus.simulated.count) for ts in starts])


def _price_slots(cfg: Config, first: datetime, end: datetime) -> list[PriceSlot]:
    """The tariff's slots over the period. Day-ahead prices of another year are moved onto the
    period by whole weeks, so each slot keeps its weekday and hour (a Monday evening peak stays
    on a Monday evening) and lands on about the same day of the year."""
    t = cfg.tariff
    if t.kind != "day_ahead":
        return tariff_for(cfg).slots(first, end)
    tariff = DayAheadTariff(t.prices_file, t.import_formula, t.export_formula)
    slots = tariff.slots(first, end)
    if slots and slots[0].start <= first and slots[-1].end >= end:
        return slots  # the period's own prices: nothing to move
    span = load_series(t.prices_file, "ts_utc", ["eur_per_mwh"])
    shift = year_shift(first, end, span.start, span.end)
    return [replace(p, start=p.start - shift, end=p.end - shift)
            for p in tariff.slots(first + shift, end + shift)]


def year_shift(first: datetime, end: datetime, known_from: datetime, known_until: datetime
               ) -> timedelta:
    """Whole weeks that move the period [first, end) into [known_from, known_until): none where
    it lies inside already, else the whole years between them rounded to whole weeks (nudged a
    week where that falls just short of a year's edge)."""
    if known_from <= first and end <= known_until:
        return timedelta(0)
    middle = first + (end - first) / 2
    years = round((known_from + (known_until - known_from) / 2 - middle) / YEAR)
    weeks = round(years * YEAR / WEEK)
    for nudge in (0, 1, -1, 2, -2):
        shift = (weeks + nudge) * WEEK
        if known_from <= first + shift and end + shift <= known_until:
            return shift
    return weeks * WEEK  # nothing fits: the missing price is reported where it is missing


def _per_step(starts: list[datetime], slots: list) -> tuple[np.ndarray, np.ndarray]:
    imp, exp = np.full(len(starts), np.nan), np.full(len(starts), np.nan)
    j = 0
    for i, ts in enumerate(starts):
        while j < len(slots) and slots[j].end <= ts:
            j += 1
        if j < len(slots) and slots[j].covers(ts):
            imp[i], exp[i] = slots[j].import_per_kwh, slots[j].export_per_kwh
    if np.isnan(imp).any():
        missing = starts[int(np.argmax(np.isnan(imp)))]
        raise SeriesError(f"the tariff has no price for {missing.isoformat()}: the prices file "
                          "does not cover the simulated period")
    return imp, exp


def _orders(cfg: Config, starts: list[datetime]) -> list[list[Order]]:
    s = cfg.markets.sim
    market = SimMarket(SimMarketSettings(
        s.reference_price_per_gpu_hour, s.price_spread, s.orders_per_hour, s.mean_lease_hours,
        s.max_gpus_per_order, cfg.gpus.simulated.model, s.seed, s.currency_rate),
        lambda: starts[0])
    per_step: list[list[Order]] = [[] for _ in starts]
    first, hour = starts[0], starts[0].replace(minute=0)
    while hour < starts[-1] + STEP:
        for order in market.orders_in_hour(hour):
            k = int((order.arrival - first) / STEP)
            if 0 <= k < len(starts):
                per_step[k].append(order)
        hour += timedelta(hours=1)
    return per_step


@dataclass
class State:
    """What a policy sees at a step: the site, the leases running, the battery."""

    step: int
    leased_gpus: int
    battery_soc_wh: float
    rig_w: float  # the rig's draw in the previous step
    offered_last_step: int = 0  # free GPUs offered in the previous step
    started_last_step: int = 0  # GPUs leased in the previous step
    floor_last_step: float = 0.0


@dataclass(frozen=True)
class Decision:
    market_gpus: int  # GPUs in the market role, leased ones included
    floor_per_gpu_hour: float  # site currency


Policy = Callable[[State], Decision]


@dataclass
class Result:
    policy: str
    revenue: float = 0.0
    rig_energy_cost: float = 0.0
    cost_by_role: dict[str, float] = field(default_factory=dict)
    kwh_by_source: dict[str, float] = field(default_factory=dict)
    leased_gpu_hours: float = 0.0
    sellable_gpu_hours: float = 0.0
    leases: int = 0
    local_shortfall_gpu_hours: float = 0.0  # the owner's reservation left unserved by leases
    local_shortfall_cost: float = 0.0
    solver_gap: float = 0.0  # hindsight: how far from its optimum the solver may have stopped
    days: float = 0.0
    opex: float = 0.0
    capex: float = 0.0
    capex_date: date | None = None

    @property
    def profit(self) -> float:
        return self.revenue - self.rig_energy_cost - self.local_shortfall_cost

    @property
    def utilization(self) -> float:
        return self.leased_gpu_hours / self.sellable_gpu_hours if self.sellable_gpu_hours else 0.0

    def payback(self) -> tuple[float | None, date | None]:
        """Years to recover the CapEx at this period's pace, OpEx included, and the date."""
        net_per_day = (self.profit - self.opex) / self.days if self.days else 0.0
        if self.capex <= 0 or net_per_day <= 0:
            return None, None
        years = self.capex / net_per_day / 365.25
        when = (self.capex_date or date.today()) + timedelta(days=years * 365.25)
        return round(years, 2), when

    def as_dict(self) -> dict:
        years, when = self.payback()
        return {"policy": self.policy, "profit": round(self.profit, 2),
                "revenue": round(self.revenue, 2),
                "rig_energy_cost": round(self.rig_energy_cost, 2),
                "energy_cost_by_role": {k: round(v, 2) for k, v in self.cost_by_role.items()},
                "rig_kwh_by_source": {k: round(v, 1) for k, v in self.kwh_by_source.items()},
                "utilization": round(self.utilization, 4), "leases": self.leases,
                "local_shortfall_gpu_hours": round(self.local_shortfall_gpu_hours, 2),
                "local_shortfall_cost": round(self.local_shortfall_cost, 2),
                "opex": round(self.opex, 2), "capex": self.capex, "payback_years": years,
                "payback_date": when.isoformat() if when else None}


def simulate(cfg: Config, site: Site, policy: Policy, name: str,
             progress: Callable[[int, int], None] | None = None) -> Result:
    """The period step by step under `policy`; `progress(steps done, steps)` after each."""
    g, s, sc = cfg.gpus.simulated, cfg.markets.sim, cfg.site
    bat = cfg.energy.simulated.battery
    soc_with = soc_without = bat.capacity_kwh * 1000.0 * bat.initial_soc_pct / 100.0
    battery = site_battery_state(bat, soc_with)
    leases: list[tuple[datetime, datetime, int, float]] = []  # start, end, GPUs, price (site)
    result = Result(name, days=site.steps / 96, cost_by_role=dict.fromkeys(
        ("market_leased", "market_idle", "local", "parked", "host"), 0.0),
        kwh_by_source=dict.fromkeys(("pv", "battery", "grid"), 0.0))
    rig_w, last = 0.0, (0, 0, 0.0)
    local_w = g.idle_w + (g.busy_w - g.idle_w) * WORKLOAD_UTIL["local"]
    lease_w = g.idle_w + (g.busy_w - g.idle_w) * WORKLOAD_UTIL["lease"]
    park_w = min(g.idle_w, g.min_power_limit_w)  # an idle GPU capped at its lowest limit
    for k, ts in enumerate(site.starts):
        end = ts + STEP
        leased_start = sum(n for _, e, n, _ in leases if e > ts)
        if progress is not None:
            progress(k, site.steps)
        decision = policy(State(k, leased_start, soc_with, rig_w, *last))
        # leases are never taken back: where they left the owner short, the owner rents the
        # missing GPUs elsewhere at the market's reference price
        local = min(int(site.local_gpus[k]), g.count - leased_start)
        short = int(site.local_gpus[k]) - local
        result.local_shortfall_gpu_hours += short * STEP_H
        result.local_shortfall_cost += (short * STEP_H * s.reference_price_per_gpu_hour
                                        * s.currency_rate)
        role_gpus = max(min(decision.market_gpus, g.count - local), leased_start)
        free = offered = role_gpus - leased_start
        floor_market = decision.floor_per_gpu_hour / s.currency_rate
        for order in site.orders[k]:
            if order_takes_offer(order, g.model, free, floor_market):
                free -= order.gpus
                leases.append((order.arrival, order.arrival + order.duration, order.gpus,
                               decision.floor_per_gpu_hour))
                result.leases += 1
        last = (offered, offered - free, decision.floor_per_gpu_hour)
        hours = [(n, p, _overlap_h(ts, end, b, e)) for b, e, n, p in leases]
        leased_h = sum(n * h for n, _, h in hours)
        result.revenue += sum(n * p * h for n, p, h in hours)
        leases = [x for x in leases if x[1] > end]
        parked = g.count - local - role_gpus
        idle_market_h = max(0.0, role_gpus * STEP_H - leased_h)
        energy_w = {"market_leased": leased_h / STEP_H * lease_w,
                    "market_idle": idle_market_h / STEP_H * g.idle_w,
                    "local": local * local_w, "parked": parked * park_w,
                    "host": sc.host_overhead_w}
        rig_w = sum(energy_w.values()) * sc.cooling_factor
        pv, load = site.pv_w[k], site.load_w[k]
        imp_w, exp_w, dis_w, soc_with = _battery_step(pv, load + rig_w, soc_with, battery)
        imp0_w, exp0_w, _, soc_without = _battery_step(pv, load, soc_without, battery)
        cost = ((imp_w - imp0_w) * site.import_per_kwh[k]
                - (exp_w - exp0_w) * site.export_per_kwh[k]) * STEP_H / 1000.0
        result.rig_energy_cost += cost
        total = sum(energy_w.values()) or 1.0
        for role, w in energy_w.items():
            result.cost_by_role[role] += cost * w / total
        _book_sources(result.kwh_by_source, pv, load, rig_w, dis_w, imp_w, exp_w)
        result.leased_gpu_hours += leased_h
        result.sellable_gpu_hours += (g.count - int(site.local_gpus[k])) * STEP_H
    if progress is not None:
        progress(site.steps, site.steps)
    result.capex = sum(i.amount for i in cfg.capex.items)
    dates = [date.fromisoformat(i.date) for i in cfg.capex.items]
    result.capex_date = min(dates) if dates else None
    result.opex = sum(o.amount_per_month for o in cfg.capex.opex) * 12 * result.days / 365.25
    return result


def _overlap_h(start: datetime, end: datetime, lease_start: datetime, lease_end: datetime
               ) -> float:
    return max(0.0, (min(end, lease_end) - max(start, lease_start)).total_seconds() / 3600.0)


def site_battery_state(bat, soc_wh: float) -> BatteryState:
    """The simulated site's battery as the planner and the controller see it."""
    cap_wh = bat.capacity_kwh * 1000.0
    return BatteryState(cap_wh, soc_wh, cap_wh * bat.min_soc_pct / 100.0, bat.max_charge_w,
                        bat.max_discharge_w)


def _battery_step(pv_w: float, demand_w: float, soc_wh: float, bat: BatteryState
                  ) -> tuple[float, float, float, float]:
    """Self-consumption: surplus charges the battery, deficits discharge it. Returns import,
    export and discharge power and the new state of charge."""
    net_w = demand_w - pv_w
    battery_w, soc_wh = self_consumption_step(net_w, soc_wh, bat, STEP_H)
    grid_w = net_w + battery_w
    return max(grid_w, 0.0), max(-grid_w, 0.0), max(-battery_w, 0.0), soc_wh


def _book_sources(kwh: dict[str, float], pv_w: float, load_w: float, rig_w: float,
                  discharge_w: float, import_w: float, export_w: float) -> None:
    """The rig's energy this step by source, with the split the ledger and dashboard use."""
    charge_w = max(0.0, pv_w + discharge_w + import_w - load_w - rig_w - export_w)
    shares = shares_of("rig", pv_w, load_w, rig_w, charge_w - discharge_w, import_w - export_w)
    for source, share in shares.items():
        kwh[source] += rig_w * share * STEP_H / 1000.0


def floor_of(cfg: Config) -> float:
    """The simple policies' floor: the market's ask in site currency."""
    s = cfg.markets.sim
    return max(s.ask_price_per_gpu_hour * s.currency_rate, cfg.planner.min_floor_per_gpu_hour)
