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
The rig's draw enters a grid balance with PV, house load and the battery; energy is paid at the
import price and exported at the feed-in price. The breaker bounds the worst case: every
offered GPU leased at once. A lease's value is booked when it starts (price x expected hours);
energy beyond the horizon is priced at the horizon's mean import price.

The battery is the site's, run by its own controller for self-consumption: surplus PV charges it
and it discharges to cover demand, within its power and state-of-charge limits. sunrig writes to
no inverter, so a plan that scheduled the battery freely (charging from cheap imports, selling at
the evening peak) would count on savings the owner never sees. The controller is a rule, not a
choice, so the program does not decide it: the battery's flows are simulated, step by step as
the site runs them, against the demand the plan expects (house, rig and the leases it aims for),
and enter the grid balance as given. Its response to the rig is a fixed point: the first pass
simulates the battery under the rig as it stands, the second under the leases the first pass aims
for, and the second plan is the one returned (its floors price the next GPU's energy beside those
leases; where the battery's flows did not move, the first solution stands). An exact program
would need a binary per slot to say whether the battery charges or discharges, and slots by the
hundred make that slow; the rig's few kilowatts move the battery's trajectory little from one pass
to the next. A plan therefore
never assumes the battery charges from the grid or exports, and its energy cost is what the site
books for the demand it expects.

The envelope enters as its segments: leases started are the sum of one bounded variable per
segment, each earning the segment's slope. The slopes fall, so the program fills them in order,
and the bound on each segment costs the solver nothing where a row per piece would.

Anything that goes wrong (no prices, no solution within the time limit) gives a safe plan that
offers nothing new.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np

from node.planning.highs import Program, SparseRows, sparse_rows
from node.planning.planner import (
    BatteryState,
    MarketTerms,
    Plan,
    PlanInputs,
    PlanSlot,
    _carried_at,
    best_floors,
    price_at,
    self_consumption_step,
    slot_starts,
)

# Price ladder for the revenue envelope: the expected price times exp(spread * z), and the ask.
LADDER_Z = tuple(z / 4 for z in range(-6, 13))
FLAP_COST = 0.01  # site currency per GPU of change in the offer between slots
OFFER_REWARD = 0.002  # a tie-breaker: with nothing against it, a free GPU is offered
MIP_GAP = 1e-3
BATTERY_SAME_W = 1.0  # the battery's flows moved less than this: no second pass needed


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
        self.model: _Model | None = None  # the last plan's program and solution, to inspect
        self.x: np.ndarray | None = None

    def plan(self, now: datetime, inp: PlanInputs) -> Plan:
        t0 = time.perf_counter()
        model = _Model.build(now, inp, self.horizon_hours, self.slot_minutes)
        if model is None:
            self.last = SolveStats(time.perf_counter() - t0, "no prices")
            return Plan(now, self.name, ())
        x, status = model.solve(self.time_limit_s)
        if x is not None:
            # the battery's answer to the leases this plan aims for, and the plan for it, with
            # the next GPU's energy judged beside those leases; where the battery runs as first
            # simulated, the energy rows are the same and the plan stands, with its floors
            again = model.again(model.lease_draw_w(x))
            left_s = self.time_limit_s - (time.perf_counter() - t0)
            moved_w = np.abs(np.subtract(again.base["battery_w"], model.base["battery_w"]))
            if moved_w.max(initial=0.0) <= BATTERY_SAME_W:
                model = again
            elif left_s > 0:
                y, again_status = again.solve(left_s, warm=model.program)
                if y is not None:
                    model, x, status = again, y, again_status
        self.model, self.x = model, x
        if x is None:
            plan = model.safe_plan(now, self.name)
            self.last = SolveStats(time.perf_counter() - t0, f"fallback: {status}")
            return plan
        plan = model.to_plan(now, self.name, x)
        self.last = SolveStats(time.perf_counter() - t0, status)
        return plan


class Columns:
    """The program's variables as named blocks of column numbers, each block an array of the
    block's shape (per market and slot, per slot, ...), so coefficients are set by block."""

    def __init__(self) -> None:
        self.n = 0
        self._blocks: dict[str, np.ndarray] = {}

    def add(self, name: str, shape: tuple[int, ...]) -> None:
        size = math.prod(shape)
        self._blocks[name] = np.arange(self.n, self.n + size).reshape(shape)
        self.n += size

    def __getitem__(self, name: str) -> np.ndarray:
        return self._blocks[name]


class Rows:
    """Sparse constraint rows, a block at a time: one row per leading element of a block's
    column arrays. A term is (columns, value) or (columns, value, first row): a term that
    starts at a later row (the slot before, from the second slot on) names it."""

    def __init__(self) -> None:
        self.n = 0
        self._r: list[np.ndarray] = []
        self._c: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        self._lo: list[np.ndarray] = []
        self._hi: list[np.ndarray] = []

    def add(self, terms: list[tuple], lo, hi) -> None:
        count = len(terms[0][0])
        for term in terms:
            cols, value, first = (*term, 0) if len(term) == 2 else term
            cols = np.asarray(cols)
            rows = self.n + first + np.arange(len(cols))
            value = np.asarray(value, dtype=float)
            if cols.ndim == 2:  # a sum over the second axis in each row
                rows = np.repeat(rows, cols.shape[1])
                value = value[:, None] if value.ndim == 1 else value
            self._r.append(rows.ravel())
            self._c.append(cols.ravel())
            self._v.append(np.broadcast_to(value, cols.shape).ravel())
        self._lo.append(np.broadcast_to(np.asarray(lo, dtype=float), (count,)))
        self._hi.append(np.broadcast_to(np.asarray(hi, dtype=float), (count,)))
        self.n += count

    def matrix(self, n_cols: int) -> tuple[SparseRows, np.ndarray, np.ndarray]:
        """The rows as a sparse matrix, with their lower and upper bounds."""
        matrix = sparse_rows(np.concatenate(self._r), np.concatenate(self._c),
                             np.concatenate(self._v), self.n, n_cols)
        return matrix, np.concatenate(self._lo), np.concatenate(self._hi)


def rows_constraint(rows: list, n: int):
    """Rows of (entries [(column, value)], low, high) as one sparse constraint."""
    from scipy.optimize import LinearConstraint
    from scipy.sparse import coo_array

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


@dataclass
class _Model:
    inp: PlanInputs
    starts: list[datetime]
    hours: float
    markets: list[str]
    base: dict  # per-slot constants
    site: dict  # per-slot constants that do not depend on the battery
    prices: list
    cols: Columns
    c: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    rows: Rows
    program: Program | None = None  # the HiGHS instance of the last solve

    @staticmethod
    def build(now: datetime, inp: PlanInputs, horizon_hours: int, slot_minutes: int,
              lease_draw_w: np.ndarray | None = None):
        """`lease_draw_w`: per slot, what the leases a previous pass aimed for add to the rig's
        draw; the battery is simulated against it (none: the rig as it stands)."""
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
        m.inp, m.starts, m.hours, m.prices = inp, starts, slot_minutes / 60.0, prices
        m.markets = sorted(inp.markets)
        m.site = _site_constants(inp, starts)
        m.base = _constants(inp, m.site, prices, m.hours, lease_draw_w)
        m._assemble()
        return m

    def again(self, lease_draw_w: np.ndarray) -> _Model:
        """The same slots and site with the battery simulated against `lease_draw_w`."""
        m = _Model.__new__(_Model)
        m.inp, m.starts, m.hours, m.prices = self.inp, self.starts, self.hours, self.prices
        m.markets, m.site = self.markets, self.site
        m.base = _constants(self.inp, self.site, self.prices, self.hours, lease_draw_w)
        m._assemble()
        return m

    @property
    def T(self) -> int:  # noqa: N802 - the usual name of a horizon's length
        return len(self.starts)

    def _assemble(self) -> None:
        """Columns, per market (m, t): GPUs in the market role o besides old leases, new leases
        still running; per market, slot and envelope segment: leases started on it; per slot:
        import, export, flap u, the market role's whole GPUs (integer,
        the sum of o; only the sum is integer, so markets alike do not make the search
        symmetric), and the reserved GPUs that leases started in the plan are expected to still
        hold (short)."""
        n_m, T = len(self.markets), self.T
        widths, slopes = self._segments()
        cols = Columns()
        for name in ("o", "leased"):
            cols.add(name, (n_m, T))
        cols.add("seg", widths.shape)
        for name in ("imp", "exp", "u", "role", "short"):
            cols.add(name, (T,))
        self.cols = cols
        self.c, self.lo, self.hi = np.zeros(cols.n), np.zeros(cols.n), np.full(cols.n, np.inf)
        self.rows = Rows()
        self._market_terms(widths, slopes)
        self._role_terms()
        self._energy_terms()

    def _segments(self) -> tuple[np.ndarray, np.ndarray]:
        """Per market, slot and segment of the revenue envelope: how many leases started it
        spans (cut at what tenants keep leased at the floor) and what each earns."""
        b, h = self.base, self.hours
        caps = np.asarray(b["cap"])
        per_market = []
        for name in self.markets:
            terms = self.inp.markets[name]
            by_cap = {cap: _revenue_segments(terms, h, cap) for cap in set(b["cap"])}
            k = max(len(width) for width, _ in by_cap.values())
            ends, slopes = np.zeros((self.T, k)), np.zeros((self.T, k))
            for cap, (width, slope) in by_cap.items():
                at = caps == cap
                ends[at] = np.concatenate([np.cumsum(width), np.full(k - len(width),
                                                                     width.sum())])
                slopes[at, :len(slope)] = slope
            # no lease below the floor: at most what tenants keep leased at the floor price
            most = _carried_at_floors(terms, [max(f[name], terms.ask_price_per_gpu_hour)
                                              for f in b["floor"]], caps)
            most = most / terms.mean_lease_hours * h
            ends = np.minimum(ends, most[:, None])
            per_market.append((np.diff(ends, axis=1, prepend=0.0).clip(min=0.0), slopes))
        k = max(w.shape[1] for w, _ in per_market)
        widths, slopes = np.zeros((len(per_market), self.T, k)), np.zeros((len(per_market),
                                                                          self.T, k))
        for m, (width, slope) in enumerate(per_market):
            widths[m, :, :width.shape[1]], slopes[m, :, :slope.shape[1]] = width, slope
        return widths, slopes

    def _market_terms(self, widths: np.ndarray, slopes: np.ndarray) -> None:
        inp, b, h, cols = self.inp, self.base, self.hours, self.cols
        o, leased, seg = cols["o"], cols["leased"], cols["seg"]
        room = np.asarray(b["room"])
        self.hi[o] = room[None, :]
        # free GPUs in the market role are what orders can land on: the price, not a short
        # offer, is what limits leases, so offer what room allows
        self.c[o] = -OFFER_REWARD
        self.hi[seg], self.c[seg] = widths, -slopes
        gpu_kw = (inp.gpu_busy_w - b["idle_w"]) * inp.cooling_factor / 1000.0
        self.c[leased] = inp.wear_per_gpu_hour * h
        for m, name in enumerate(self.markets):
            terms = inp.markets[name]
            decay = math.exp(-h / terms.mean_lease_hours)
            # what still runs at the end is paid beyond the horizon
            self.c[leased[m, -1]] += decay * terms.mean_lease_hours * (
                gpu_kw * b["mean_import"] + inp.wear_per_gpu_hour)
            # leased[t] = decay * leased[t-1] + started[t]
            self.rows.add([(leased[m], 1.0), (seg[m], -1.0), (leased[m, :-1], -decay, 1)],
                          0.0, 0.0)
            # the market role (whole GPUs) holds the expected new leases and fits the room
            # beside the owner's GPUs and old leases, even if every GPU in it were leased; a
            # soft reservation lets leases run on into GPUs the owner reserves later, at the
            # price of renting those elsewhere
            self.rows.add([(leased[m], 1.0), (o[m], -1.0), (cols["short"], -1.0)],
                          -np.inf, 0.0)
        short = cols["short"]
        if inp.shortfall_per_gpu_hour is None:
            self.hi[short] = 0.0
        else:
            self.hi[short] = b["reserved_later"]
            self.c[short] = inp.shortfall_per_gpu_hour * h

    def _role_terms(self) -> None:
        b, cols = self.base, self.cols
        role, u = cols["role"], cols["u"]
        self.hi[role] = b["room"]
        self.rows.add([(cols["o"].T, 1.0), (role, -1.0)], 0.0, 0.0)
        self.c[u] = FLAP_COST
        # u >= |change in GPUs held back|: the room shrinking as the owner's GPUs come is no
        # flapping, and must not make the plan hold GPUs back before it
        d = np.diff(np.asarray(b["room"]))
        self.rows.add([(u[1:], 1.0), (role[1:], -1.0), (role[:-1], 1.0)], -d, np.inf)
        self.rows.add([(u[1:], 1.0), (role[1:], 1.0), (role[:-1], -1.0)], d, np.inf)

    def _energy_terms(self) -> None:
        """Import and export settle what house, rig and the battery's simulated flows leave."""
        inp, b, h, cols = self.inp, self.base, self.hours, self.cols
        self.c[cols["imp"]] = np.asarray(b["import"]) * h / 1000.0
        self.c[cols["exp"]] = -np.asarray(b["export"]) * h / 1000.0
        extra_w = (inp.gpu_busy_w - b["idle_w"]) * inp.cooling_factor
        net = np.asarray(b["net_w"])
        self.rows.add([(cols["imp"], 1.0), (cols["exp"], -1.0),
                       (cols["leased"].T, -extra_w)], net, net)

    def lease_draw_w(self, x: np.ndarray) -> np.ndarray:
        """Per slot, what the new leases of solution `x` are expected to add to the rig's draw."""
        extra_w = (self.inp.gpu_busy_w - self.base["idle_w"]) * self.inp.cooling_factor
        return x[self.cols["leased"]].sum(axis=0) * extra_w

    def energy_cost(self, x: np.ndarray) -> float:
        """The site's grid cost over the horizon that solution `x` expects, site currency."""
        return float(self.c[self.cols["imp"]] @ x[self.cols["imp"]]
                     + self.c[self.cols["exp"]] @ x[self.cols["exp"]])

    def solve(self, time_limit_s: float, warm: Program | None = None
              ) -> tuple[np.ndarray | None, str]:
        """The relaxation first: where its whole-GPU roles come out whole (as they mostly
        do), it is the integer optimum too and the branch and bound is not needed. `warm`: an
        earlier pass's program; where the matrix is the same, it starts from that basis."""
        t0 = time.perf_counter()
        matrix, row_lo, row_hi = self.rows.matrix(self.cols.n)
        if warm is not None and warm.same_matrix(matrix):
            warm.resolve(self.c, self.lo, self.hi, row_lo, row_hi)
            self.program = warm
        else:
            self.program = Program(self.c, self.lo, self.hi, matrix, row_lo, row_hi)
        x, status = self.program.solve(time_limit_s)
        if x is not None:
            roles = x[self.cols["role"]]
            if np.all(np.abs(roles - np.round(roles)) < 1e-6):
                return x, status
        left_s = time_limit_s - (time.perf_counter() - t0)
        if left_s <= 0:
            return None, "time limit reached"
        return self.program.solve(left_s, integer=self.cols["role"], mip_rel_gap=MIP_GAP)

    def to_plan(self, now: datetime, planner: str, x: np.ndarray) -> Plan:
        step = timedelta(minutes=round(self.hours * 60))
        cols, b = self.cols, self.base
        started = x[cols["seg"]].sum(axis=2).tolist()
        o, leased = x[cols["o"]].tolist(), x[cols["leased"]].tolist()
        floors = {name: self._floors(name) for name in self.markets}
        slots = []
        for t, start in enumerate(self.starts):
            offered, held, want = {}, {}, {}
            for m, name in enumerate(self.markets):
                # aiming for no new lease here: hold only what is leased, offer nothing free
                want[name] = o[m][t] if started[m][t] > 1e-3 else math.ceil(
                    leased[m][t] - 1e-6)
                held[name] = math.ceil(b["old"][t][name] - 1e-9)  # never taken back
            for name, n in _apportion(want).items():
                offered[name] = held[name] + n
            _clip(offered, held, int(math.floor(b["room"][t] + 1e-6)) + sum(held.values()))
            floor = {name: floors[name][t] for name in self.markets}
            margin = sum(n * (floor[k] - b["gpu_cost"][t]) * self.hours
                         for k, n in offered.items())
            slots.append(PlanSlot(start, start + step, offered, floor, b["local"][t],
                                  self.inp.gpu_min_limit_w, round(margin, 4)))
        return Plan(now, planner, tuple(slots))

    def _floors(self, name: str) -> list[float]:
        """Per slot, the floor that earns most over the leases, whether the plan aims for new
        ones there or not: a GPU that is free anyway (expected leases rounded up) must not sell
        at the ask."""
        b, terms = self.base, self.inp.markets[name]
        best = best_floors(terms, [costs[name] - self.inp.wear_per_gpu_hour
                                   for costs in b["lease_cost"]], b["cap"])
        return [round(max(b["floor"][t][name], floor, terms.ask_price_per_gpu_hour), 4)
                for t, floor in enumerate(best)]

    def safe_plan(self, now: datetime, planner: str) -> Plan:
        """Offer nothing new: only what running leases hold stays in the market role."""
        step = timedelta(minutes=round(self.hours * 60))
        slots = []
        for t, start in enumerate(self.starts):
            old = {name: int(math.ceil(v - 1e-9)) for name, v in self.base["old"][t].items()}
            slots.append(PlanSlot(start, start + step, old, dict(self.base["floor"][t]),
                                  self.base["local"][t], self.inp.gpu_min_limit_w, 0.0))
        return Plan(now, planner + ":safe", tuple(slots))


def _carried_at_floors(terms: MarketTerms, floors: list[float], caps: np.ndarray
                       ) -> np.ndarray:
    """Per slot, `carried_gpus(floor, cap)`: one Kaufman-Roberts pass per capacity for all
    the slots that share it, rather than one per slot."""
    shares = np.array([terms.share_paying(p) for p in floors])
    out = np.zeros(len(floors))
    for cap in np.unique(caps).tolist():
        if cap > 0:
            at = caps == cap
            out[at] = _carried_at(terms, shares[at], cap)
    return out


@lru_cache(maxsize=256)
def _revenue_segments(terms: MarketTerms, hours: float, capacity: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Concave piecewise-linear bound on a slot's lease value as a function of leases started,
    as (width, slope) per segment from zero, the slopes falling. Cached: a plan's second pass
    asks the same (and read-only arrays keep a caller from changing what the next one gets).

    Points: at floor p, `capacity` offered GPUs keep carried(p) leased, so a slot starts
    carried(p) / mean hours * h leases, each worth p * mean hours.
    """
    prices = {terms.expected_price_per_gpu_hour * math.exp(terms.price_spread * z)
              for z in LADDER_Z}
    prices.add(terms.ask_price_per_gpu_hour)
    ladder = sorted(p for p in prices if p >= terms.ask_price_per_gpu_hour)
    carried = _carried_at_floors(terms, ladder, np.full(len(ladder), capacity))
    points = [(0.0, 0.0)]
    for p, gpus in zip(ladder, carried.tolist(), strict=True):
        started = gpus / terms.mean_lease_hours * hours
        points.append((started, started * p * terms.mean_lease_hours))
    points.sort()
    hull: list[tuple[float, float]] = []
    for point in points:  # upper concave hull, left to right
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) >= 0:
            hull.pop()
        hull.append(point)
    widths, slopes = [], []
    for (x0, y0), (x1, y1) in zip(hull, hull[1:], strict=False):
        if x1 - x0 > 1e-12:
            widths.append(x1 - x0)
            slopes.append((y1 - y0) / (x1 - x0))
    widths_a, slopes_a = np.array(widths), np.array(slopes)
    widths_a.setflags(write=False)
    slopes_a.setflags(write=False)
    return widths_a, slopes_a


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


def _constants(inp: PlanInputs, site: dict, prices: list, hours: float,
               lease_draw_w: np.ndarray | None = None) -> dict:
    """Per slot: the site's constants (`_site_constants`), the battery's flows, prices and
    floors."""
    base = dict(site)
    draw = np.zeros(len(prices)) if lease_draw_w is None else np.asarray(lease_draw_w)
    pv = np.asarray(base["pv_w"])
    base["battery_w"] = battery_flows(inp.battery, np.asarray(base["fixed_w"]) + draw + pv, pv,
                                      hours)
    base["net_w"] = (np.asarray(base["fixed_w"]) + base["battery_w"]).tolist()
    base.update(_costs(inp, base, prices, hours, draw))
    return base


def _site_constants(inp: PlanInputs, starts: list[datetime]) -> dict:
    """Per slot: local GPUs, old leases, room for more and the draw besides new leases."""
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
    cap = [int(r) + sum(math.ceil(v - 1e-9) for v in o.values()) for r, o in zip(room, old,
                                                                                strict=True)]
    # GPUs the owner reserves at t beyond the fewest reserved since the plan began: only those
    # can a lease started earlier in the plan still hold
    fewest = np.minimum.accumulate(local)
    reserved_later = [local[t] - int(fewest[t]) for t in range(len(starts))]
    return {"local": local, "old": old, "room": room, "cap": cap, "fixed_w": fixed,
            "pv_w": pv, "reserved_later": reserved_later, "idle_w": idle_w}


def battery_flows(bat: BatteryState | None, demand_w: np.ndarray, pv_w: np.ndarray,
                  hours: float) -> np.ndarray:
    """Per slot, the battery's power (+ charging) as the site's own controller runs it for
    this demand and PV."""
    flows = np.zeros(len(demand_w))
    if bat is None:
        return flows
    soc_wh = min(max(bat.soc_wh, 0.0), bat.capacity_wh)
    for t, net_w in enumerate((demand_w - pv_w).tolist()):
        flows[t], soc_wh = self_consumption_step(net_w, soc_wh, bat, hours)
    return flows


def _costs(inp: PlanInputs, base: dict, prices: list, hours: float, lease_draw_w: np.ndarray
           ) -> dict:
    """Per slot, what one more busy GPU's energy costs where it would come from, a lease's
    energy and wear over its expected run, and the floor that covers them."""
    imports = [p.import_per_kwh for p in prices]
    exports = [min(p.export_per_kwh, p.import_per_kwh) for p in prices]
    # a lease adds what a busy GPU draws beyond an idle one; the host runs either way
    extra_w = (inp.gpu_busy_w - base["idle_w"]) * inp.cooling_factor
    gpu_kw = extra_w / 1000.0
    gpu_cost = []
    for t in range(len(imports)):
        # one more busy GPU runs on PV that would be exported (what the battery and the
        # leases aimed for leave), or on imported energy
        surplus_w = -base["net_w"][t] - lease_draw_w[t]
        marginal = exports[t] if surplus_w >= extra_w else imports[t]
        gpu_cost.append(gpu_kw * marginal)
    energy = {m: (_lease_energy_cost(gpu_cost, hours, terms.mean_lease_hours)
                  + inp.wear_per_gpu_hour).tolist() for m, terms in inp.markets.items()}
    lease_cost = [dict(zip(energy, costs, strict=True)) for costs in zip(*energy.values(),
                                                                         strict=True)]
    floors = [{m: max(inp.min_floor_per_gpu_hour, cost + inp.margin_per_gpu_hour)
               for m, cost in costs.items()} for costs in lease_cost]
    return {"import": imports, "export": exports, "floor": floors, "lease_cost": lease_cost,
            "gpu_cost": gpu_cost, "mean_import": sum(imports) / len(imports)}


def _lease_energy_cost(gpu_cost: list[float], hours: float, mean_hours: float) -> np.ndarray:
    """Expected energy cost per GPU-hour of a lease starting in each slot (survival-weighted),
    from the last slot back: each slot's sums are its own cost plus the next slot's, decayed."""
    decay = math.exp(-hours / mean_hours)
    n = len(gpu_cost)
    total, weight = np.zeros(n), np.zeros(n)
    running_total = running_weight = 0.0
    for t in range(n - 1, -1, -1):
        running_total = gpu_cost[t] + decay * running_total
        running_weight = 1.0 + decay * running_weight
        total[t], weight[t] = running_total, running_weight
    # what survives the horizon: a lease starting at t still runs with decay ** (n - t)
    left = decay ** (n - np.arange(n))
    tail = np.where(left > 1e-3, left / (1.0 - decay), 0.0)
    mean = sum(gpu_cost) / n
    return (total + tail * mean) / (weight + tail)
