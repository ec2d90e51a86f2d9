"""Plans: per slot, how many GPUs each market gets and the floor price per GPU-hour.

`RulePlanner` decides slot by slot from energy prices alone: it offers every GPU the owner does
not reserve whenever the market's expected price covers the floor, and never more GPUs than the
breaker allows. The optimising planner returns the same `Plan` type.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import NormalDist

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

    Demand: orders arrive at `orders_per_hour`, each for `mean_gpus_per_order` GPUs on average,
    with the tenant's maximum price log-normal around the expected price (sigma `price_spread`);
    an order takes the offer when its maximum covers the floor, and pays the floor.
    """

    expected_price_per_gpu_hour: float
    ask_price_per_gpu_hour: float
    orders_per_hour: float = 1.5
    mean_gpus_per_order: float = 2.6
    price_spread: float = 0.25
    mean_lease_hours: float = 8.0

    def share_paying(self, price_per_gpu_hour: float) -> float:
        """The share of tenants whose maximum is at least the price."""
        if price_per_gpu_hour <= 0:
            return 1.0
        if self.price_spread <= 0:
            return 1.0 if price_per_gpu_hour <= self.expected_price_per_gpu_hour else 0.0
        z = math.log(price_per_gpu_hour / self.expected_price_per_gpu_hour) / self.price_spread
        return 0.5 * math.erfc(z / math.sqrt(2.0))

    def demand_gpus_per_hour(self, price_per_gpu_hour: float) -> float:
        return (self.orders_per_hour * self.mean_gpus_per_order
                * self.share_paying(price_per_gpu_hour))

    def price_for_demand(self, gpus_per_hour: float) -> float:
        """The floor at which tenants want `gpus_per_hour` new GPUs: the demand curve inverted."""
        full = self.orders_per_hour * self.mean_gpus_per_order
        share = min(max(gpus_per_hour / full, 1e-6), 1 - 1e-6) if full > 0 else 1e-6
        z = NormalDist().inv_cdf(1.0 - share)
        return self.expected_price_per_gpu_hour * math.exp(self.price_spread * z)


class FillCalibration:
    """How much of the demand model's promise the market kept: leases started over leases the
    model expected for the GPUs offered at the floors posted, with old evidence fading.

    Orders for more GPUs than are free, and chance, make a market fill less than its average
    demand suggests; the planner scales the demand by this factor.
    """

    def __init__(self, prior: float = 0.5, weight: float = 20.0, half_life_steps: float = 672):
        self.expected, self.started = weight, weight * prior
        self.fade = 0.5 ** (1.0 / half_life_steps)

    def record(self, expected_gpus: float, started_gpus: float) -> None:
        self.expected = self.expected * self.fade + expected_gpus
        self.started = self.started * self.fade + started_gpus

    @property
    def factor(self) -> float:
        return min(1.0, max(0.05, self.started / self.expected))


@dataclass(frozen=True)
class KnownDemand:
    """Demand in one slot when the orders are known (hindsight): (max price, GPUs) per order."""

    orders: tuple[tuple[float, int], ...]
    slot_hours: float

    def demand_gpus_per_hour(self, price_per_gpu_hour: float) -> float:
        return sum(g for p, g in self.orders if p >= price_per_gpu_hour) / self.slot_hours

    def ladder(self) -> list[float]:
        return sorted({p for p, _ in self.orders})

    def price_for_demand(self, gpus_per_hour: float) -> float:
        """The highest floor at which the known orders still fill `gpus_per_hour`."""
        fits = [p for p in self.ladder() if self.demand_gpus_per_hour(p) >= gpus_per_hour - 1e-6]
        return max(fits) if fits else 0.0


@dataclass(frozen=True)
class BatteryState:
    capacity_wh: float
    soc_wh: float
    min_soc_wh: float
    max_charge_w: float
    max_discharge_w: float
    efficiency: float = 0.95


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
    # the orders each slot will bring, where they are known (the hindsight benchmark)
    known_demand_at: Callable[[str, datetime], KnownDemand] | None = None


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
            price = _price_at(inp.prices, start)
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


def _price_at(prices: list[PriceSlot], ts: datetime) -> PriceSlot | None:
    for p in prices:
        if p.covers(ts):
            return p
    return None
