"""Which GPU does what: `local` (the owner's inference), `market` (offered or leased), `parked`.

Invariants, kept by `assign_roles` whatever it is given:
- a GPU that holds a lease stays in the market with that lease;
- a local GPU is never offered to a market and never given a lease;
- parked GPUs run at the lowest power limit they allow.
Among otherwise equal choices a GPU keeps its previous role, so roles do not flap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from node.config import WEEKDAYS, LocalConfig

LOCAL, MARKET, PARKED = "local", "market", "parked"


@dataclass(frozen=True)
class Assignment:
    index: int
    role: str
    market: str | None = None
    lease_id: str | None = None


@dataclass(frozen=True)
class LeaseHold:
    """A lease as roles see it: which market, how many GPUs, and which ones it already holds."""

    market: str
    lease_id: str
    gpus: int
    gpu_indexes: tuple[int, ...] = ()


@dataclass(frozen=True)
class RoleResult:
    assignments: tuple[Assignment, ...]
    new_lease_gpus: Mapping[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    free_offered: Mapping[str, int] = field(default_factory=dict)
    unplaced_leases: tuple[str, ...] = ()

    def by_role(self, role: str) -> list[int]:
        return [a.index for a in self.assignments if a.role == role]


def reserved_local_gpus(local: LocalConfig, ts_local: datetime) -> int:
    """The owner's reservation at a local time: the largest matching window, else the default."""
    day = WEEKDAYS[ts_local.weekday()]
    hhmm = ts_local.strftime("%H:%M")
    matching = [w.gpus for w in local.schedule if day in w.days and w.start <= hhmm < w.end]
    return max(matching) if matching else local.reserved_gpus


def assign_roles(gpu_indexes: Sequence[int], reserved_local: int,
                 offered: Mapping[str, int], leases: Iterable[LeaseHold],
                 previous: Mapping[int, Assignment] | None = None) -> RoleResult:
    """Assign every GPU a role for the current slot; see the module's invariants."""
    previous = previous or {}
    gpus = set(gpu_indexes)
    chosen: dict[int, Assignment] = {}
    waiting: list[LeaseHold] = []
    for lease in leases:
        held = [i for i in lease.gpu_indexes if i in gpus and i not in chosen]
        for i in held:
            chosen[i] = Assignment(i, MARKET, lease.market, lease.lease_id)
        if not lease.gpu_indexes:
            waiting.append(lease)

    def prefer(role: str, market: str | None = None) -> list[int]:
        """Free GPUs, best first: those already in this role, then parked ones, then the rest."""
        def rank(i: int) -> tuple[int, int]:
            prev = previous.get(i)
            if prev and prev.role == role and prev.market == market:
                return 0, i
            return (1 if prev is None or prev.role == PARKED else 2), i
        return sorted((i for i in gpus if i not in chosen), key=rank)

    for i in prefer(LOCAL)[:max(0, reserved_local)]:
        chosen[i] = Assignment(i, LOCAL)

    new_lease_gpus, unplaced = _place_waiting(waiting, chosen, prefer)
    free_offered = {}
    for market in sorted(offered):
        held = sum(1 for a in chosen.values() if a.role == MARKET and a.market == market)
        picks = prefer(MARKET, market)[:max(0, offered[market] - held)]
        for i in picks:
            chosen[i] = Assignment(i, MARKET, market)
        free_offered[market] = sum(1 for a in chosen.values()
                                   if a.market == market and a.lease_id is None)
    for i in gpus - set(chosen):
        chosen[i] = Assignment(i, PARKED)
    return RoleResult(tuple(chosen[i] for i in sorted(chosen)), new_lease_gpus, free_offered,
                      tuple(unplaced))


def _place_waiting(waiting: list[LeaseHold], chosen: dict[int, Assignment], prefer) -> tuple:
    """Give new leases GPUs from those not local, the lease's own market's GPUs first."""
    placed: dict[tuple[str, str], tuple[int, ...]] = {}
    unplaced: list[str] = []
    for lease in waiting:
        free_market = [i for i, a in chosen.items()
                       if a.role == MARKET and a.market == lease.market and a.lease_id is None]
        candidates = sorted(free_market) + prefer(MARKET, lease.market)
        if len(candidates) < lease.gpus:
            unplaced.append(lease.lease_id)
            continue
        picks = tuple(sorted(candidates[:lease.gpus]))
        for i in picks:
            chosen[i] = Assignment(i, MARKET, lease.market, lease.lease_id)
        placed[(lease.market, lease.lease_id)] = picks
    return placed, unplaced


def power_limit_for(role: str, min_limit_w: float | None, default_limit_w: float | None
                    ) -> float | None:
    """Parked GPUs get the lowest allowed limit; working GPUs their default."""
    return min_limit_w if role == PARKED else default_limit_w
