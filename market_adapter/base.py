"""The one interface every GPU market adapter implements, and the types it hands back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from energy.redact import redact

ACTIVE, CLOSED = "active", "closed"


class MarketError(Exception):
    """A market could not be reached or answered nonsense; the message names market and call.
    It is scrubbed of secrets here, where every adapter turns outside failures into ours: a
    market's answer may echo the request, API key and all."""

    def __init__(self, message: str):
        super().__init__(redact(message))


@dataclass(frozen=True)
class Capacity:
    """GPUs the rig offers right now: free ones only, never those already leased."""

    gpus: int
    model: str
    memory_gib: float
    tee: bool = False


@dataclass(frozen=True)
class Lease:
    market: str
    lease_id: str
    gpus: int
    price_per_gpu_hour: float  # market currency
    state: str  # ACTIVE or CLOSED
    started: datetime
    ended: datetime | None


@dataclass(frozen=True)
class Payout:
    market: str
    payout_id: str
    lease_id: str
    ts: datetime
    amount: float  # market currency
    # True: `amount` is what the lease has earned in all, as the market's books say (an escrow's
    # withdrawn plus balance); the ledger books only what it adds to what was booked before
    cumulative: bool = False


class Market(Protocol):
    name: str
    currency_rate: float  # site currency per unit of the market's currency

    def offer(self, capacity: Capacity, floor_per_gpu_hour: float) -> None:
        """Offer `capacity` at no less than `floor_per_gpu_hour` (market currency)."""
        ...

    def leases(self) -> list[Lease]:
        """Every lease the market knows for this rig, active and closed."""
        ...

    def payouts(self, since: datetime | None) -> list[Payout]:
        """Payouts at or after `since` (all when None)."""
        ...
