"""Plans: per slot, how many GPUs each market gets and the floor price per GPU-hour.

`RulePlanner` decides slot by slot from energy prices alone: it offers every GPU the owner does
not reserve whenever the market's expected price covers the floor, and never more GPUs than the
breaker allows. The optimising planner returns the same `Plan` type.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np

from energy.types import PriceSlot


@dataclass(frozen=True)
class PlanSlot:
    start: datetime
    end: datetime
    offered: Mapping[str, int]  # GPUs in the market role, per market (leased ones included)
    floor_per_gpu_hour: Mapping[str, float]  # site currency, per market
    local_gpus: int
    parked_power_cap_w: float | None
    expected_margin: float  # site currency over the slot, if the offered GPUs were all leased


@dataclass(frozen=True)
class Plan:
    created: datetime
    planner: str
    slots: tuple[PlanSlot, ...]

    def slot_at(self, ts: datetime) -> PlanSlot | None:
        for slot in self.slots:
            if slot.start <= ts < slot.end:
                return slot
        return None


@dataclass(frozen=True)
class MarketTerms:
    """What the planner knows of one market, in site currency.

    Demand: orders arrive at `orders_per_hour`, each for `mean_gpus_per_order` GPUs on average
    (`order_sizes` gives the mix where it is known), with the tenant's maximum price log-normal
    around the expected price (sigma `price_spread`); an order takes the offer when it fits and
    its maximum covers the floor, and pays the floor.
    """

    expected_price_per_gpu_hour: float
    ask_price_per_gpu_hour: float
    orders_per_hour: float = 1.5
    mean_gpus_per_order: float = 2.6
    price_spread: float = 0.25
    mean_lease_hours: float = 8.0
    order_sizes: tuple[tuple[int, float], ...] = ()  # (GPUs, share of orders)

    def share_paying(self, price_per_gpu_hour: float) -> float:
        """The share of tenants whose maximum is at least the price."""
        if price_per_gpu_hour <= 0:
            return 1.0
        if self.price_spread <= 0:
            return 1.0 if price_per_gpu_hour <= self.expected_price_per_gpu_hour else 0.0
        z = math.log(price_per_gpu_hour / self.expected_price_per_gpu_hour) / self.price_spread
        return 0.5 * math.erfc(z / math.sqrt(2.0))

    def carried_gpus(self, price_per_gpu_hour: float, capacity: int) -> float:
        """GPUs leased on average when `capacity` GPUs are offered at this floor for good.

        Orders that do not fit the free GPUs are lost, so this is a multi-rate loss system; the
        Kaufman-Roberts recursion gives its occupancy exactly for Poisson orders of several
        sizes and any lease-length distribution with this mean.
        """
        if capacity <= 0:
            return 0.0
        return _carried(self, self.share_paying(price_per_gpu_hour), capacity)

    def expected_gpus_started(self, floor_per_gpu_hour: float, free_gpus: int,
                              hours: float) -> float:
        """GPUs the orders arriving over `hours` take from `free_gpus` offered at this floor,
        one after another, each when it fits what the earlier ones left and its tenant pays.
        Unlike the long-run fill it holds in any state of the rig, so comparing it with what
        the market did calibrates the demand model without the bias of only looking while
        GPUs are free."""
        return _expected_started(self, round(self.share_paying(floor_per_gpu_hour), 9),
                                 max(0, free_gpus), round(self.orders_per_hour * hours, 9))

    def best_floor(self, cost_per_gpu_hour: float, capacity: int) -> float:
        """The floor that earns most over time with `capacity` GPUs offered: the margin over the
        cost times the GPUs it keeps leased. A high floor sells fewer GPU-hours; a low one sells
        them cheap."""
        return best_floors(self, [cost_per_gpu_hour], [capacity])[0]


@lru_cache(maxsize=65536)
def _expected_started(terms: MarketTerms, share: float, free: int, arrivals: float) -> float:
    """Poisson(`arrivals`) orders meet `free` GPUs in turn: the expected GPUs they take."""
    sizes = terms.order_sizes or ((max(1, round(terms.mean_gpus_per_order)), 1.0),)
    total = sum(w for _, w in sizes) or 1.0
    taken = [0.0] * (free + 1)  # expected GPUs taken by the orders still to come, by free
    expected, p_n, n = 0.0, math.exp(-arrivals), 0
    while n < 200 and (n <= arrivals or p_n > 1e-12):
        expected += p_n * taken[free]
        n += 1
        p_n *= arrivals / n
        taken = [sum(w / total * (share * (k + taken[f - k]) + (1 - share) * taken[f])
                     if k <= f else w / total * taken[f] for k, w in sizes)
                 for f in range(free + 1)]
    return expected


FLOOR_STEPS = 80  # the coarse ladder's steps from the ask to where few tenants pay
FINE_STEPS = 20  # the fine ladder's steps on each side of the coarse best


def best_floors(terms: MarketTerms, costs: Sequence[float], capacities: Sequence[int]
                ) -> list[float]:
    """`best_floor` for many slots at once: a coarse ladder, then a fine one around its best
    step (a cost that moves by a cent moves the floor too). What tenants keep leased at each
    rung does not depend on the cost, so it is computed once per market and capacity; a cost
    only picks the best rung."""
    costs, capacities = np.asarray(costs, dtype=float), np.asarray(capacities)
    floors = np.full(len(costs), terms.ask_price_per_gpu_hour)
    for capacity in np.unique(capacities).tolist():
        coarse = _coarse_ladder(terms, capacity)
        if coarse is None:
            continue
        at = np.flatnonzero(capacities == capacity)
        prices, carried = coarse
        rungs = np.argmax((prices[None, :] - costs[at, None]) * carried[None, :], axis=1)
        for k in np.unique(rungs).tolist():
            near = at[rungs == k]
            prices, carried = _fine_ladder(terms, capacity, k)
            best = np.argmax((prices[None, :] - costs[near, None]) * carried[None, :], axis=1)
            floors[near] = prices[best]
    return floors.tolist()


def _ladder_ends(terms: MarketTerms) -> tuple[float, float]:
    return (terms.ask_price_per_gpu_hour,
            terms.expected_price_per_gpu_hour * math.exp(3 * terms.price_spread))


@lru_cache(maxsize=1024)
def _coarse_ladder(terms: MarketTerms, capacity: int) -> tuple[np.ndarray, np.ndarray] | None:
    low, top = _ladder_ends(terms)
    if top <= low:
        return None
    step = (top - low) / FLOOR_STEPS
    return _rungs(terms, capacity, [low + step * k for k in range(FLOOR_STEPS + 1)])


@lru_cache(maxsize=4096)
def _fine_ladder(terms: MarketTerms, capacity: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    low, top = _ladder_ends(terms)
    step = (top - low) / FLOOR_STEPS
    coarse = low + step * k
    fine = (coarse + step * j / FINE_STEPS for j in range(-FINE_STEPS, FINE_STEPS + 1))
    return _rungs(terms, capacity, [p for p in fine if low <= p <= top])


def _rungs(terms: MarketTerms, capacity: int, prices: list[float]
           ) -> tuple[np.ndarray, np.ndarray]:
    shares = np.array([terms.share_paying(p) for p in prices])
    carried = _carried_at(terms, shares, capacity) if capacity > 0 else np.zeros(len(prices))
    return np.array(prices), carried


@lru_cache(maxsize=65536)
def _carried(terms: MarketTerms, share: float, capacity: int) -> float:
    """One floor's occupancy; a plan asks the same few prices and capacities slot after slot."""
    return float(_carried_at(terms, np.array([share]), capacity)[0])


def _carried_at(terms: MarketTerms, shares: np.ndarray, capacity: int) -> np.ndarray:
    """Kaufman-Roberts: the occupancy distribution of `capacity` GPUs under each order size's
    offered load, for many shares of tenants paying at once (a ladder of floors)."""
    sizes = terms.order_sizes or ((max(1, round(terms.mean_gpus_per_order)), 1.0),)
    total = sum(w for _, w in sizes) or 1.0
    loads = [(b, terms.orders_per_hour * shares * w / total * terms.mean_lease_hours)
             for b, w in sizes if b <= capacity]
    q = np.zeros((len(shares), capacity + 1))
    q[:, 0] = 1.0
    for j in range(1, capacity + 1):
        q[:, j] = sum((a * b * q[:, j - b] for b, a in loads if b <= j),
                      np.zeros(len(shares))) / j
        big = q[:, j] > 1e200  # rescale: only the shape matters
        if big.any():
            q[big] /= q[big, j][:, None]
    return q @ np.arange(capacity + 1) / q.sum(axis=1)


class FillCalibration:
    """How much of the demand model's promise the market kept: GPUs leased over GPUs the model
    expected for the offers posted, with old evidence fading (four weeks' half-life by default:
    lease sizes vary, so a week of orders says little, and markets change slowly).

    A market busier or quieter than configured shows here; the planner scales the demand by
    this factor. The configured demand counts as `weight` GPUs of evidence, fading like any
    other: `for_terms` sizes it so that the lumpiness of the orders alone (one order of four
    GPUs where the model expected one GPU) moves the factor by a few per cent, not by a fifth
    in an afternoon, which would move every floor on noise.
    """

    def __init__(self, prior: float = 1.0, weight: float = 20.0,
                 half_life_hours: float = 28 * 24.0):
        self.expected, self.started = weight, weight * prior
        self.half_life_hours = half_life_hours

    @classmethod
    def for_terms(cls, terms: MarketTerms, noise: float = 0.05) -> FillCalibration:
        """A calibration whose prior holds until the evidence says more than `noise` (relative
        standard error of the factor). GPUs started are a compound Poisson sum: their variance
        per GPU expected is the mean square order size over the mean size."""
        sizes = terms.order_sizes or ((max(1, round(terms.mean_gpus_per_order)), 1.0),)
        total = sum(w for _, w in sizes) or 1.0
        mean = sum(n * w for n, w in sizes) / total
        square = sum(n * n * w for n, w in sizes) / total
        return cls(weight=square / mean / noise ** 2)

    def record(self, expected_gpus: float, started_gpus: float, hours: float) -> None:
        """What `hours` of offers were expected to lease, and what they did."""
        fade = 0.5 ** (max(0.0, hours) / self.half_life_hours)
        self.expected = self.expected * fade + expected_gpus
        self.started = self.started * fade + started_gpus

    @property
    def factor(self) -> float:
        return min(3.0, max(0.05, self.started / self.expected))


@dataclass(frozen=True)
class BatteryState:
    capacity_wh: float
    soc_wh: float
    min_soc_wh: float
    max_charge_w: float
    max_discharge_w: float
    efficiency: float = 0.95  # applied on charge, as the site's battery does


def self_consumption_step(net_w: float, soc_wh: float, bat: BatteryState, hours: float
                          ) -> tuple[float, float]:
    """The site's own battery controller over one step: surplus PV (`net_w` < 0, demand minus
    PV) charges it and a deficit discharges it, within its power and state-of-charge limits; it
    never charges from the grid nor discharges into it. Returns its power (+ charging) and the
    new state of charge."""
    if bat.capacity_wh <= 0 or hours <= 0:
        return 0.0, soc_wh
    if net_w < 0:
        charge_w = min(-net_w, bat.max_charge_w,
                       max(0.0, bat.capacity_wh - soc_wh) / (bat.efficiency * hours))
        return charge_w, soc_wh + charge_w * bat.efficiency * hours
    discharge_w = min(net_w, bat.max_discharge_w, max(0.0, soc_wh - bat.min_soc_wh) / hours)
    return -discharge_w, soc_wh - discharge_w * hours


@dataclass(frozen=True)
class PlanInputs:
    gpu_count: int
    local_gpus_at: Callable[[datetime], int]
    prices: list[PriceSlot]
    markets: Mapping[str, MarketTerms]
    gpu_busy_w: float
    gpu_min_limit_w: float | None
    host_overhead_w: float
    cooling_factor: float
    breaker_limit_w: float
    house_load_w: float
    exporting_now: bool
    wear_per_gpu_hour: float
    margin_per_gpu_hour: float
    min_floor_per_gpu_hour: float
    expected_lease_hours: float = 8.0
    # forecasts over the horizon; None means "as now" (house_load_w, no PV)
    pv_w_at: Callable[[datetime], float] | None = None
    house_w_at: Callable[[datetime], float] | None = None
    battery: BatteryState | None = None
    # GPUs held by leases that run now, expected to be still leased at a time (per market)
    leased_gpus_at: Callable[[str, datetime], float] | None = None
    # what a reserved GPU-hour that a lease still holds costs the owner; None: never plan one
    shortfall_per_gpu_hour: float | None = None


def shortfall_price(reservation: str, markets: Mapping[str, MarketTerms]) -> float | None:
    """A soft reservation is worth what renting a GPU on the dearest market would cost."""
    if reservation != "soft" or not markets:
        return None
    return max(t.expected_price_per_gpu_hour for t in markets.values())


def slot_starts(now: datetime, horizon_hours: int, slot_minutes: int) -> list[datetime]:
    step = timedelta(minutes=slot_minutes)
    first = now.replace(second=0, microsecond=0)
    first -= timedelta(minutes=first.minute % slot_minutes)
    return [first + k * step for k in range(horizon_hours * 60 // slot_minutes)]


class RulePlanner:
    name = "rule"

    def __init__(self, horizon_hours: int = 48, slot_minutes: int = 15):
        self.horizon_hours = horizon_hours
        self.slot_minutes = slot_minutes

    def plan(self, now: datetime, inp: PlanInputs) -> Plan:
        step = timedelta(minutes=self.slot_minutes)
        starts = slot_starts(now, self.horizon_hours, self.slot_minutes)
        # a lease taken now runs on: keep back what the owner will want before it likely ends
        ahead = math.ceil(inp.expected_lease_hours * 60 / self.slot_minutes)
        local = [min(inp.local_gpus_at(starts[0] + k * step), inp.gpu_count)
                 for k in range(len(starts) + ahead)]
        slots = []
        for k, start in enumerate(starts):
            price = price_at(inp.prices, start)
            if price is None:
                break  # no plan where prices are unknown; the agent keeps the last slot's offer
            marginal = price.export_per_kwh if (inp.exporting_now and start <= now) else (
                price.import_per_kwh)
            slots.append(self._slot(start, start + step, marginal, local[k],
                                    max(local[k:k + ahead + 1]), inp))
        return Plan(now, self.name, tuple(slots))

    def _slot(self, start: datetime, end: datetime, price_per_kwh: float, local: int,
              wanted_soon: int, inp: PlanInputs) -> PlanSlot:
        sellable = min(inp.gpu_count - wanted_soon, _breaker_room_gpus(inp, local))
        cost = energy_cost_per_gpu_hour(inp, price_per_kwh)
        base_floor = max(inp.min_floor_per_gpu_hour,
                         cost + inp.wear_per_gpu_hour + inp.margin_per_gpu_hour)
        worth = {m: t for m, t in inp.markets.items()
                 if t.expected_price_per_gpu_hour >= base_floor}
        offered = dict.fromkeys(inp.markets, 0)
        for k, market in enumerate(sorted(worth)):  # split evenly, remainder to the first ones
            offered[market] = sellable // len(worth) + (1 if k < sellable % len(worth) else 0)
        floors = {m: round(max(base_floor, t.ask_price_per_gpu_hour), 4)
                  for m, t in inp.markets.items()}
        hours = (end - start) / timedelta(hours=1)
        margin = sum(n * (floors[m] - cost) * hours for m, n in offered.items())
        return PlanSlot(start, end, offered, floors, local, inp.gpu_min_limit_w, round(margin, 4))


def energy_cost_per_gpu_hour(inp: PlanInputs, price_per_kwh: float) -> float:
    """Energy cost of one busy GPU for an hour: its draw plus its share of the host, cooled."""
    share_w = inp.host_overhead_w / max(inp.gpu_count, 1)
    return (inp.gpu_busy_w + share_w) * inp.cooling_factor / 1000.0 * price_per_kwh


def _breaker_room_gpus(inp: PlanInputs, local_gpus: int) -> int:
    """How many more busy GPUs fit under the breaker beside the house, host and local GPUs."""
    room_w = (inp.breaker_limit_w - inp.house_load_w
              - (inp.host_overhead_w + local_gpus * inp.gpu_busy_w) * inp.cooling_factor)
    return max(0, math.floor(room_w / (inp.gpu_busy_w * inp.cooling_factor)))


def price_at(prices: list[PriceSlot], ts: datetime) -> PriceSlot | None:
    """The slot covering `ts` in a list of slots in time order (a tariff's or a forecast's)."""
    k = bisect_right(prices, ts, key=_slot_start) - 1
    return prices[k] if k >= 0 and prices[k].covers(ts) else None


def _slot_start(slot: PriceSlot) -> datetime:
    return slot.start
