"""A simulated GPU market: a seeded stream of tenant orders meets the rig's offer.

Orders arrive as a Poisson stream; each asks for a GPU count and model, carries the tenant's
maximum price per GPU-hour (log-normal around a reference price) and a lease duration
(exponential). An order becomes a lease when the offer has enough free GPUs of that model and the
tenant's maximum is at least the floor; the lease is priced at the floor, the rig's bid.
Leases pay out hour by hour. The stream depends only on the seed and the hour, so the same seed
gives the same orders whatever the agent did, and a restarted agent sees the same market.
The market keeps its own state in a JSON file, as a real market keeps it on its servers.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from energy.files import (
    FileProblem,
    load_state,
    number_field,
    text_field,
    time_field,
    whole_field,
)
from market_adapter.base import ACTIVE, CLOSED, Capacity, Lease, MarketError, Payout
from market_adapter.files import write_json_atomic

HOUR = timedelta(hours=1)
ORDER_SIZES = (1, 2, 4, 8)
ORDER_SIZE_WEIGHTS = (0.4, 0.3, 0.2, 0.1)
KEEP_CLOSED = timedelta(days=45)  # closed leases stay visible for a month and a half
# what a lease read back from the state file may plausibly hold; beyond is a corrupt file
MAX_GPUS_PER_LEASE = 1_000
MAX_PRICE_PER_GPU_HOUR = 1e6


@dataclass(frozen=True)
class SimMarketSettings:
    reference_price_per_gpu_hour: float = 2.30
    price_spread: float = 0.25
    orders_per_hour: float = 1.5
    mean_lease_hours: float = 8.0
    max_gpus_per_order: int = 8
    model: str = "h200"
    seed: int = 42
    currency_rate: float = 1.0


@dataclass(frozen=True)
class Order:
    order_id: str
    arrival: datetime
    gpus: int
    model: str
    max_price_per_gpu_hour: float
    duration: timedelta


class SimMarket:
    def __init__(self, settings: SimMarketSettings, now: Callable[[], datetime],
                 state_path: str | Path | None = None, name: str = "sim"):
        self.name = name
        self.settings = settings
        self.currency_rate = settings.currency_rate
        self._now = now
        self._state_path = Path(state_path) if state_path else None
        self._lock = threading.Lock()
        self._offer: tuple[Capacity, float] | None = None
        self._free = 0
        self._leases: dict[str, dict] = {}
        self._processed_until = now()
        self._load_state()

    # --- the Market interface ------------------------------------------------------------------
    def offer(self, capacity: Capacity, floor_per_gpu_hour: float) -> None:
        if capacity.gpus < 0 or not math.isfinite(floor_per_gpu_hour) or floor_per_gpu_hour < 0:
            raise MarketError(f"{self.name}: offer of {capacity.gpus} GPUs at "
                              f"{floor_per_gpu_hour} per GPU-hour is not valid")
        with self._lock:
            self._advance(self._now())  # orders so far meet the offer that stood at the time
            self._offer = (capacity, floor_per_gpu_hour)
            self._free = capacity.gpus

    def leases(self) -> list[Lease]:
        with self._lock:
            now = self._advance(self._now())
            return [self._lease(rec, now) for rec in self._leases.values()]

    def payouts(self, since: datetime | None) -> list[Payout]:
        with self._lock:
            now = self._advance(self._now())
            out: list[Payout] = []
            for rec in self._leases.values():
                end = min(_dt(rec["end"]), now)
                if since is not None and end < since:
                    continue
                out.extend(p for p in _hourly_payouts(self.name, rec, end)
                           if since is None or p.ts >= since)
            return sorted(out, key=lambda p: (p.ts, p.payout_id))

    # --- the order stream -----------------------------------------------------------------------
    def orders_in_hour(self, hour_start: datetime) -> list[Order]:
        """The orders arriving in one hour; a pure function of the seed and the hour."""
        s = self.settings
        hour_index = int(hour_start.timestamp() // 3600)
        rng = random.Random(f"{s.seed}:{hour_index}")
        sizes = [n for n in ORDER_SIZES if n <= s.max_gpus_per_order] or [1]
        weights = ORDER_SIZE_WEIGHTS[:len(sizes)]
        orders, t = [], 0.0
        while s.orders_per_hour > 0:
            t += rng.expovariate(s.orders_per_hour)
            if t >= 1.0:
                break
            orders.append(Order(
                order_id=f"{self.name}-{hour_index}-{len(orders)}",
                arrival=hour_start + timedelta(hours=t),
                gpus=rng.choices(sizes, weights)[0],
                model=s.model,
                max_price_per_gpu_hour=round(
                    s.reference_price_per_gpu_hour * rng.lognormvariate(0.0, s.price_spread), 4),
                duration=timedelta(hours=rng.expovariate(1.0 / s.mean_lease_hours)),
            ))
        return orders

    def _advance(self, now: datetime) -> datetime:
        """Let orders that arrived since the last call meet the offer; returns now."""
        start = self._processed_until
        if now <= start:
            return now
        changed = False
        hour = start.replace(minute=0, second=0, microsecond=0)
        while hour <= now:
            for order in self.orders_in_hour(hour):
                if start < order.arrival <= now and self._accept(order):
                    changed = True
            hour += HOUR
        self._processed_until = now
        changed |= self._forget_old(now)
        if changed:
            self._save_state()
        return now

    def _accept(self, order: Order) -> bool:
        if self._offer is None:
            return False
        capacity, floor = self._offer
        if not order_takes_offer(order, capacity.model, self._free, floor):
            return False
        self._free -= order.gpus
        self._leases[order.order_id] = {
            "lease_id": order.order_id, "gpus": order.gpus, "price": floor,
            "start": order.arrival.isoformat(), "end": (order.arrival + order.duration).isoformat(),
        }
        return True

    def _lease(self, rec: dict, now: datetime) -> Lease:
        end = _dt(rec["end"])
        closed = end <= now
        return Lease(self.name, rec["lease_id"], rec["gpus"], rec["price"],
                     CLOSED if closed else ACTIVE, _dt(rec["start"]), end if closed else None)

    def _forget_old(self, now: datetime) -> bool:
        old = [k for k, r in self._leases.items() if _dt(r["end"]) < now - KEEP_CLOSED]
        for k in old:
            del self._leases[k]
        return bool(old)

    # --- persistence ----------------------------------------------------------------------------
    def _load_state(self) -> None:
        if self._state_path is None:
            return
        try:
            state = load_state(self._state_path, _parse_state, f"{self.name} market")
        except FileProblem as exc:  # corrupt, and it cannot be moved aside to start fresh
            raise MarketError(f"{self.name}: state file {exc}") from None
        if state is not None:
            processed_until, self._leases = state
            self._processed_until = max(self._processed_until, processed_until)

    def _save_state(self) -> None:
        if self._state_path is None:
            return
        state = {"processed_until": self._processed_until.isoformat(),
                 "leases": list(self._leases.values())}
        write_json_atomic(self._state_path, state, 0o600)  # a crash leaves the old or the new


def order_takes_offer(order: Order, model: str, free_gpus: int, floor_per_gpu_hour: float) -> bool:
    """The market's rule: the right model, enough free GPUs, and the tenant's maximum covers
    the floor (the lease then pays the floor)."""
    return (order.model == model and order.gpus <= free_gpus
            and order.max_price_per_gpu_hour >= floor_per_gpu_hour)


def _hourly_payouts(market: str, rec: dict, until: datetime) -> list[Payout]:
    """One payout per completed hour of a lease, and one for the last part hour at its end."""
    start, end = _dt(rec["start"]), _dt(rec["end"])
    out, k = [], 0
    while True:
        chunk_start = start + k * HOUR
        chunk_end = min(chunk_start + HOUR, end)
        if chunk_start >= end or chunk_end > until:
            return out
        hours = (chunk_end - chunk_start) / HOUR
        out.append(Payout(market, f"{rec['lease_id']}/{k}", rec["lease_id"], chunk_end,
                          round(rec["gpus"] * rec["price"] * hours, 6)))
        k += 1


def _parse_state(doc: object) -> tuple[datetime, dict[str, dict]]:
    """The state file's document, every value checked: (processed until, leases by id)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("leases"), list):
        raise ValueError("not an object with a list of leases")
    leases: dict[str, dict] = {}
    for i, rec in enumerate(doc["leases"]):
        try:
            lease = _parse_lease(rec)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"leases[{i}]: {exc}") from None
        leases[lease["lease_id"]] = lease
    return time_field(doc, "processed_until").astimezone(UTC), leases


def _parse_lease(rec: object) -> dict:
    if not isinstance(rec, dict):
        raise ValueError("not an object")
    lease = {"lease_id": text_field(rec, "lease_id"),
             "gpus": whole_field(rec, "gpus", 1, MAX_GPUS_PER_LEASE),
             "price": number_field(rec, "price", 0.0, MAX_PRICE_PER_GPU_HOUR),
             "start": rec["start"], "end": rec["end"]}
    if time_field(rec, "end") < time_field(rec, "start"):
        raise ValueError("ends before it starts")
    return lease


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)
