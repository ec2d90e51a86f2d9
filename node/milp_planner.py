"""The optimising planner: a mixed-integer program over the coming slots, solved with HiGHS.

Per slot and market it decides how many free GPUs to offer and how many leases to aim for; the
floor price follows from the market's demand curve (the price at which tenants want that many
GPU-hours). What a real market imposes is in the model:
- demand falls with the price asked and a lease pays the floor, so the revenue of aiming for `s`
  leases is concave in `s` (a piecewise-linear envelope over a ladder of prices);
- a lease started in a slot runs on (exponential duration, mean from the market's history), so
  `leased[t] = decay * leased[t-1] + started[t]`: a sunny-hour lease keeps drawing into the
  evening, and GPUs the owner reserves later must still be free then (in expectation);
- leases are never taken back: GPUs already leased are outside the decision;
- offers changing from slot to slot cost a little, so the plan does not flap.
The rig's draw enters a grid balance with PV, house load and an optional battery; energy is paid
at the import price and exported at the feed-in price. The breaker bounds the worst case: every
offered GPU leased at once. A lease's value is booked when it starts (price x expected hours);
energy beyond the horizon is priced at the horizon's mean import price.

Anything that goes wrong (no prices, no solution within the time limit) gives a safe plan that
offers nothing new.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from node.planner import (
    MarketTerms,
    Plan,
    PlanInputs,
    PlanSlot,
    price_at,
    slot_starts,
)

# Price ladder for the revenue envelope: the expected price times exp(spread * z), and the ask.
LADDER_Z = tuple(z / 4 for z in range(-6, 13))
FLAP_COST = 0.01  # site currency per GPU of change in the offer between slots
OFFER_REWARD = 0.002  # a tie-breaker: with nothing against it, a free GPU is offered


@dataclass
class SolveStats:
    seconds: float
    status: str


class MilpPlanner:
    name = "milp"

    def __init__(self, horizon_hours: int = 48, slot_minutes: int = 15,
                 time_limit_s: float = 5.0):
        self.horizon_hours = horizon_hours
        self.slot_minutes = slot_minutes
        self.time_limit_s = time_limit_s
        self.last = SolveStats(0.0, "not run")

    def plan(self, now: datetime, inp: PlanInputs) -> Plan:
        t0 = time.perf_counter()
        model = _Model.build(now, inp, self.horizon_hours, self.slot_minutes)
        if model is None:
            self.last = SolveStats(time.perf_counter() - t0, "no prices")
            return Plan(now, self.name, ())
        result = milp(model.c, integrality=model.integrality, bounds=model.bounds,
                      constraints=model.constraints,
                      options={"time_limit": self.time_limit_s, "mip_rel_gap": 1e-3})
        seconds = time.perf_counter() - t0
        if result.x is None:
            self.last = SolveStats(seconds, f"fallback: {result.message}")
            return model.safe_plan(now, self.name)
        self.last = SolveStats(seconds, "optimal" if result.status == 0 else result.message)
        return model.to_plan(now, self.name, result.x)


@dataclass
class _Model:
    inp: PlanInputs
    starts: list[datetime]
    hours: float
    markets: list[str]
    envelopes: dict  # per (market, capacity): (intercept, slope) pieces of the revenue bound
    base: dict  # per-slot constants
    c: np.ndarray
    integrality: np.ndarray
    bounds: Bounds
    constraints: list[LinearConstraint]

    # variable layout: per slot t and market m: GPUs in the market role o (besides old leases),
    # leases started s, revenue r, new leases still running L; then per slot: import, export,
    # charge, discharge, soc, flap u, the market role's whole GPUs (integer, the sum of o;
    # only the sum is integer, so markets alike do not make the search symmetric), and the
    # reserved GPUs that leases started in the plan are expected to still hold (short)
    FLOWS = ("imp", "exp", "ch", "dis", "soc", "u", "role", "short")

    @staticmethod
    def build(now: datetime, inp: PlanInputs, horizon_hours: int, slot_minutes: int):
        starts, prices = [], []
        for start in slot_starts(now, horizon_hours, slot_minutes):
            price = price_at(inp.prices, start)
            if price is None:
                break
            starts.append(start)
            prices.append(price)
        if not starts or not inp.markets:
            return None
        m = _Model.__new__(_Model)
        m.inp, m.starts, m.hours = inp, starts, slot_minutes / 60.0
        m.markets = sorted(inp.markets)
        m.base = _constants(inp, starts, prices, m.hours)
        m.envelopes = {}
        m._assemble()
        return m

    @property
    def T(self) -> int:  # noqa: N802 - the usual name of a horizon's length
        return len(self.starts)

    @property
    def width(self) -> int:
        return len(self.markets) * 4 + len(self.FLOWS)

    def var(self, t: int, name: str, m: int = 0) -> int:
        if name in self.FLOWS:
            return t * self.width + len(self.markets) * 4 + self.FLOWS.index(name)
        return t * self.width + m * 4 + ("o", "s", "r", "leased").index(name)

    def _assemble(self) -> None:
        inp, b, h, n_m = self.inp, self.base, self.hours, len(self.markets)
        n = self.T * self.width
        c, integrality = np.zeros(n), np.zeros(n)
        lo, hi = np.zeros(n), np.full(n, np.inf)
        rows: list[tuple[list[tuple[int, float]], float, float]] = []
        bat = inp.battery
        extra_w = (inp.gpu_busy_w - b["idle_w"]) * inp.cooling_factor
        gpu_kw = extra_w / 1000.0  # a lease's draw beyond an idle GPU
        for t in range(self.T):
            v = lambda name, m=0, t=t: self.var(t, name, m)  # noqa: E731
            for m, name in enumerate(self.markets):
                terms = inp.markets[name]
                decay = math.exp(-h / terms.mean_lease_hours)
                hi[v("o", m)] = b["room"][t]
                # free GPUs in the market role are what orders can land on: the price, not a
                # short offer, is what limits leases, so offer what room allows
                c[v("o", m)] = -OFFER_REWARD
                # no lease below the floor: at most what tenants keep leased at the floor price
                cap = b["cap"][t]
                hi[v("s", m)] = terms.carried_gpus(max(
                    b["floor"][t][name], terms.ask_price_per_gpu_hour), cap
                ) / terms.mean_lease_hours * h
                lo[v("r", m)] = -np.inf
                c[v("r", m)] = -1.0
                for intercept, slope in self._envelope(name, cap):
                    rows.append(([(v("r", m), 1.0), (v("s", m), -slope)], -np.inf, intercept))
                entries = [(v("leased", m), 1.0), (v("s", m), -1.0)]
                if t > 0:
                    entries.append((self.var(t - 1, "leased", m), -decay))
                rows.append((entries, 0.0, 0.0))
                c[v("leased", m)] += inp.wear_per_gpu_hour * h
                if t == self.T - 1:  # what still runs at the end is paid beyond the horizon
                    c[v("leased", m)] += decay * terms.mean_lease_hours * (
                        gpu_kw * b["mean_import"] + inp.wear_per_gpu_hour)
            # the market role (whole GPUs) holds the expected new leases and fits the room
            # beside the owner's GPUs and old leases, even if every GPU in it were leased; a
            # soft reservation lets leases run on into GPUs the owner reserves later, at the
            # price of renting those elsewhere
            for m in range(n_m):
                rows.append(([(v("leased", m), 1.0), (v("o", m), -1.0), (v("short"), -1.0)],
                             -np.inf, 0.0))
            if inp.shortfall_per_gpu_hour is None:
                hi[v("short")] = 0.0
            else:
                hi[v("short")] = b["reserved_later"][t]
                c[v("short")] = inp.shortfall_per_gpu_hour * h
            integrality[v("role")], hi[v("role")] = 1, b["room"][t]
            rows.append(([(v("o", m), 1.0) for m in range(n_m)] + [(v("role"), -1.0)], 0.0, 0.0))
            c[v("imp")] = b["import"][t] * h / 1000.0
            c[v("exp")] = -b["export"][t] * h / 1000.0
            if bat:
                eff = bat.efficiency
                hi[v("ch")], hi[v("dis")] = bat.max_charge_w, bat.max_discharge_w
                initial = min(max(bat.soc_wh, bat.min_soc_wh), bat.capacity_wh)
                lo[v("soc")], hi[v("soc")] = bat.min_soc_wh, bat.capacity_wh
                prev = [(self.var(t - 1, "soc"), -1.0)] if t > 0 else []
                rhs = 0.0 if t > 0 else initial
                rows.append(([(v("soc"), 1.0), (v("ch"), -eff * h), (v("dis"), h / eff)] + prev,
                             rhs, rhs))
                if t == self.T - 1:  # leave the battery as full as it was found
                    lo[v("soc")] = initial
            else:
                hi[v("ch")] = hi[v("dis")] = hi[v("soc")] = 0.0
            rows.append(([(v("imp"), 1.0), (v("exp"), -1.0), (v("ch"), -1.0), (v("dis"), 1.0)]
                         + [(v("leased", m), -extra_w) for m in range(n_m)],
                         b["fixed_w"][t], b["fixed_w"][t]))
            c[v("u")] = FLAP_COST
            if t > 0:
                # u >= |change in GPUs held back|: the room shrinking as the owner's GPUs come
                # is no flapping, and must not make the plan hold GPUs back before it
                d = b["room"][t] - b["room"][t - 1]
                change = [(v("role"), 1.0), (self.var(t - 1, "role"), -1.0)]
                rows.append(([(v("u"), 1.0)] + [(i, -x) for i, x in change], -d, np.inf))
                rows.append(([(v("u"), 1.0)] + change, d, np.inf))
        self.c, self.integrality, self.bounds = c, integrality, Bounds(lo, hi)
        self.constraints = [rows_constraint(rows, n)]

    def _envelope(self, name: str, capacity: int) -> list[tuple[float, float]]:
        key = (name, capacity)
        if key not in self.envelopes:
            self.envelopes[key] = _revenue_envelope(self.inp.markets[name], self.hours, capacity)
        return self.envelopes[key]

    def to_plan(self, now: datetime, planner: str, x: np.ndarray) -> Plan:
        step = timedelta(minutes=round(self.hours * 60))
        slots = []
        for t, start in enumerate(self.starts):
            offered, floors, held, want = {}, {}, {}, {}
            for m, name in enumerate(self.markets):
                terms = self.inp.markets[name]
                started = x[self.var(t, "s", m)]
                # the floor that earns most over the leases, whether the plan aims for new
                # ones here or not: a GPU that is free anyway (expected leases rounded up)
                # must not sell at the ask
                floor = max(self.base["floor"][t][name], terms.best_floor(
                    self.base["lease_cost"][t][name] - self.inp.wear_per_gpu_hour,
                    self.base["cap"][t]))
                floors[name] = round(max(floor, terms.ask_price_per_gpu_hour), 4)
                # aiming for no new lease here: hold only what is leased, offer nothing free
                want[name] = x[self.var(t, "o", m)] if started > 1e-3 else math.ceil(
                    x[self.var(t, "leased", m)] - 1e-6)
                held[name] = math.ceil(self.base["old"][t][name] - 1e-9)  # never taken back
            for name, n in _apportion(want).items():
                offered[name] = held[name] + n
            _clip(offered, held, int(math.floor(self.base["room"][t] + 1e-6)) + sum(held.values()))
            margin = sum(n * (floors[k] - self.base["gpu_cost"][t]) * self.hours
                         for k, n in offered.items())
            slots.append(PlanSlot(start, start + step, offered, floors,
                                  self.base["local"][t], self.inp.gpu_min_limit_w,
                                  round(margin, 4)))
        return Plan(now, planner, tuple(slots))

    def safe_plan(self, now: datetime, planner: str) -> Plan:
        """Offer nothing new: only what running leases hold stays in the market role."""
        step = timedelta(minutes=round(self.hours * 60))
        slots = []
        for t, start in enumerate(self.starts):
            old = {name: int(math.ceil(v - 1e-9)) for name, v in self.base["old"][t].items()}
            slots.append(PlanSlot(start, start + step, old, dict(self.base["floor"][t]),
                                  self.base["local"][t], self.inp.gpu_min_limit_w, 0.0))
        return Plan(now, planner + ":safe", tuple(slots))


def rows_constraint(rows: list, n: int) -> LinearConstraint:
    """Rows of (entries [(column, value)], low, high) as one sparse constraint."""
    r, cols, vals, lo, hi = [], [], [], [], []
    for i, (entries, low, high) in enumerate(rows):
        for col, val in entries:
            r.append(i)
            cols.append(col)
            vals.append(val)
        lo.append(low)
        hi.append(high)
    matrix = coo_array((vals, (r, cols)), shape=(len(rows), n)).tocsr()
    return LinearConstraint(matrix, np.array(lo), np.array(hi))


def _revenue_envelope(terms: MarketTerms, hours: float, capacity: int
                      ) -> list[tuple[float, float]]:
    """Concave piecewise-linear bound on a slot's lease value as a function of leases started.

    Points: at floor p, `capacity` offered GPUs keep carried(p) leased, so a slot starts
    carried(p) / mean hours * h leases, each worth p * mean hours.
    """
    prices = {terms.expected_price_per_gpu_hour * math.exp(terms.price_spread * z)
              for z in LADDER_Z}
    prices.add(terms.ask_price_per_gpu_hour)
    points = [(0.0, 0.0)]
    for p in prices:
        if p >= terms.ask_price_per_gpu_hour:
            started = terms.carried_gpus(p, capacity) / terms.mean_lease_hours * hours
            points.append((started, started * p * terms.mean_lease_hours))
    points.sort()
    hull: list[tuple[float, float]] = []
    for point in points:  # upper concave hull, left to right
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) >= 0:
            hull.pop()
        hull.append(point)
    pieces = []
    for (x0, y0), (x1, y1) in zip(hull, hull[1:], strict=False):
        if x1 - x0 > 1e-12:
            slope = (y1 - y0) / (x1 - x0)
            pieces.append((y0 - slope * x0, slope))
    return pieces or [(0.0, 0.0)]


def _cross(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _apportion(want: dict[str, float]) -> dict[str, int]:
    """Whole GPUs per market summing to the rounded total, the largest remainders first."""
    whole = {k: math.floor(v + 1e-9) for k, v in want.items()}
    left = int(round(sum(want.values()))) - sum(whole.values())
    for k in sorted(want, key=lambda k: whole[k] - want[k])[:max(0, left)]:
        whole[k] += 1
    return whole


def _clip(offered: dict[str, int], held: dict[str, int], limit: int) -> None:
    """Trim rounding so the market role never holds more GPUs than there is room for, without
    touching GPUs that running leases hold."""
    while sum(offered.values()) > limit:
        spare = {k: offered[k] - held[k] for k in offered if offered[k] > held[k]}
        if not spare:
            return
        offered[max(spare, key=spare.get)] -= 1


def _constants(inp: PlanInputs, starts: list[datetime], prices: list, hours: float) -> dict:
    """Per slot: local GPUs, old leases, room for more, fixed draw, prices and floors."""
    n = inp.gpu_count
    idle_w = inp.gpu_min_limit_w or inp.gpu_busy_w * 0.15
    local = [min(inp.local_gpus_at(s), n) for s in starts]
    old = [{m: (inp.leased_gpus_at(m, s) if inp.leased_gpus_at else 0.0) for m in inp.markets}
           for s in starts]
    house = [inp.house_w_at(s) if inp.house_w_at else inp.house_load_w for s in starts]
    pv = [inp.pv_w_at(s) if inp.pv_w_at else 0.0 for s in starts]
    busy_cool_w = inp.gpu_busy_w * inp.cooling_factor
    room, fixed = [], []
    for t in range(len(starts)):
        # a lease still running is a whole GPU: room is judged on whole GPUs held
        held = local[t] + sum(math.ceil(v - 1e-9) for v in old[t].values())
        breaker_w = (inp.breaker_limit_w - house[t]
                     - (inp.host_overhead_w + held * inp.gpu_busy_w) * inp.cooling_factor)
        by_breaker = max(0, math.floor(breaker_w / busy_cool_w)) if busy_cool_w > 0 else n
        room.append(float(max(0, min(n - held, by_breaker))))
        expected_held = local[t] + sum(old[t].values())
        rig_w = (inp.host_overhead_w + expected_held * inp.gpu_busy_w
                 + (n - expected_held) * idle_w) * inp.cooling_factor
        fixed.append(house[t] - pv[t] + rig_w)
    imports = [p.import_per_kwh for p in prices]
    exports = [min(p.export_per_kwh, p.import_per_kwh) for p in prices]
    # a lease adds what a busy GPU draws beyond an idle one; the host runs either way
    extra_w = (inp.gpu_busy_w - idle_w) * inp.cooling_factor
    gpu_kw = extra_w / 1000.0
    gpu_cost = []
    for t in range(len(starts)):
        # one more busy GPU runs on PV that would be exported, or on imported energy
        surplus_w = -fixed[t]  # PV left after house and the rig as it stands
        marginal = exports[t] if surplus_w >= extra_w else imports[t]
        gpu_cost.append(gpu_kw * marginal)
    lease_cost = [{m: _lease_energy_cost(gpu_cost, t, hours, terms.mean_lease_hours)
                   + inp.wear_per_gpu_hour for m, terms in inp.markets.items()}
                  for t in range(len(starts))]
    floors = [{m: max(inp.min_floor_per_gpu_hour, cost + inp.margin_per_gpu_hour)
               for m, cost in costs.items()} for costs in lease_cost]
    cap = [int(r) + sum(math.ceil(v - 1e-9) for v in o.values()) for r, o in zip(room, old,
                                                                                strict=True)]
    # GPUs the owner reserves at t beyond the fewest reserved since the plan began: only those
    # can a lease started earlier in the plan still hold
    reserved_later = [local[t] - min(local[:t + 1]) for t in range(len(starts))]
    return {"local": local, "old": old, "room": room, "cap": cap, "fixed_w": fixed,
            "reserved_later": reserved_later,
            "idle_w": idle_w, "import": imports, "export": exports, "floor": floors,
            "lease_cost": lease_cost, "gpu_cost": gpu_cost,
            "mean_import": sum(imports) / len(imports)}


def _lease_energy_cost(gpu_cost: list[float], t: int, hours: float, mean_hours: float) -> float:
    """Expected energy cost per GPU-hour of a lease starting in slot t (survival-weighted)."""
    decay = math.exp(-hours / mean_hours)
    weight, total, w = 0.0, 0.0, 1.0
    for k in range(t, len(gpu_cost)):
        total += w * gpu_cost[k]
        weight += w
        w *= decay
    if w > 1e-3:  # beyond the horizon: the horizon's mean cost
        mean = sum(gpu_cost) / len(gpu_cost)
        tail = w / (1.0 - decay)
        total += tail * mean
        weight += tail
    return total / weight
