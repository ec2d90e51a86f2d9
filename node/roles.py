"""Which GPU does what: `local` (the owner's inference), `market` (offered or leased), `parked`.

Invariants, kept by `assign_roles` whatever it is given:
- a GPU that holds a lease stays in the market with that lease;
- a local GPU is never offered to a market and never given a lease;
- parked GPUs run at the lowest power limit they allow.
Among otherwise equal choices a GPU keeps its previous role, so roles do not flap.

Where the kubelet tells which pod holds which GPU (`Physical`), that wins over the plan's
counts and over where a lease was guessed to run: a GPU a tenant's pod holds is that market's
(with its lease, where one matches), a GPU the owner's pods hold is local, and a GPU a hold pod
holds is never offered to a market (it is local or parked).
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
class Physical:
    """Which GPUs pods really hold, by index, as the kubelet's PodResources shows them."""

    tenant: Mapping[int, tuple[str, str]] = field(default_factory=dict)  # -> (market, holder)
    local: frozenset[int] = frozenset()  # the owner's pods (and any pod of no market)
    hold: frozenset[int] = frozenset()  # sunrig's hold pods

    def taken(self) -> set[int]:
        return set(self.tenant) | self.local | self.hold


@dataclass(frozen=True)
class RoleResult:
    assignments: tuple[Assignment, ...]
    new_lease_gpus: Mapping[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    free_offered: Mapping[str, int] = field(default_factory=dict)
    unplaced_leases: tuple[str, ...] = ()

    def by_role(self, role: str) -> list[int]:
        return [a.index for a in self.assignments if a.role == role]


def reserved_local_gpus(local: LocalConfig, ts_local: datetime, demand_gpus: int = 0,
                        bounds: tuple[int, int] | None = None) -> int:
    """The owner's reservation at a local time: the largest matching window, else the default;
    raised to what local demand asks for, and kept within the owner's (min, max) local GPUs."""
    day = WEEKDAYS[ts_local.weekday()]
    hhmm = ts_local.strftime("%H:%M")
    matching = [w.gpus for w in local.schedule if day in w.days and w.start <= hhmm < w.end]
    reserved = max(max(matching) if matching else local.reserved_gpus, demand_gpus)
    if bounds is not None:
        reserved = min(max(reserved, bounds[0]), bounds[1])
    return reserved


def assign_roles(gpu_indexes: Sequence[int], reserved_local: int,
                 offered: Mapping[str, int], leases: Iterable[LeaseHold],
                 previous: Mapping[int, Assignment] | None = None,
                 physical: Physical | None = None) -> RoleResult:
    """Assign every GPU a role for the current slot; see the module's invariants."""
    previous = previous or {}
    gpus = set(gpu_indexes)
    leases = list(leases)
    moved: dict[tuple[str, str], tuple[int, ...]] = {}
    if physical is not None:
        leases, moved = _leases_on_physical(leases, physical, gpus)
    hold = physical.hold if physical is not None else frozenset()
    chosen: dict[int, Assignment] = {}
    waiting: list[LeaseHold] = []
    for lease in leases:
        held = [i for i in lease.gpu_indexes if i in gpus and i not in chosen]
        for i in held:
            chosen[i] = Assignment(i, MARKET, lease.market, lease.lease_id)
        if not lease.gpu_indexes:
            waiting.append(lease)

    def prefer(role: str, market: str | None = None) -> list[int]:
        """Free GPUs, best first: those already in this role, then parked ones, then the rest.
        A GPU a hold pod holds is never a market's, and the first to be local."""
        def rank(i: int) -> tuple[int, int, int]:
            prev = previous.get(i)
            first = 0 if i in hold else 1
            if prev and prev.role == role and prev.market == market:
                return first, 0, i
            return first, (1 if prev is None or prev.role == PARKED else 2), i
        free = (i for i in gpus if i not in chosen and (role != MARKET or i not in hold))
        return sorted(free, key=rank)

    for i in sorted(physical.local & gpus if physical is not None else ()):
        chosen.setdefault(i, Assignment(i, LOCAL))  # the owner's pods run there: local
    in_local = sum(1 for a in chosen.values() if a.role == LOCAL)
    for i in prefer(LOCAL)[:max(0, reserved_local - in_local)]:
        chosen[i] = Assignment(i, LOCAL)

    new_lease_gpus, unplaced = _place_waiting(waiting, chosen, prefer)
    new_lease_gpus = {**moved, **new_lease_gpus}
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


def _leases_on_physical(leases: list[LeaseHold], physical: Physical, gpus: set[int]
                        ) -> tuple[list[LeaseHold], dict[tuple[str, str], tuple[int, ...]]]:
    """Leases placed where the kubelet says their pods run. A lease whose id names the holder
    (Akash: the lease namespace) takes those GPUs; a market's other tenant GPUs go to its
    leases not yet matched, in order (Hyperbolic lists no lease per pod); GPUs left over stay
    with the pod that holds them. A stored guess that collides with a held GPU is dropped, so
    the lease is placed anew on a free GPU. Returns the leases and those whose GPUs moved."""
    by_holder: dict[tuple[str, str], list[int]] = {}
    for i, key in sorted(physical.tenant.items()):
        if i in gpus:
            by_holder.setdefault(key, []).append(i)
    ids = {(le.market, le.lease_id) for le in leases}
    spare = {m: [i for (mm, h), idx in by_holder.items() if mm == m and (mm, h) not in ids
                 for i in idx] for m, _ in by_holder}
    taken = physical.taken()
    out: list[LeaseHold] = []
    for lease in leases:
        key = (lease.market, lease.lease_id)
        if key in by_holder:
            placed = tuple(by_holder[key])
        elif spare.get(lease.market):
            pool = spare[lease.market]
            placed, spare[lease.market] = tuple(pool[:lease.gpus]), pool[lease.gpus:]
        else:
            placed = tuple(i for i in lease.gpu_indexes if i not in taken)
        out.append(LeaseHold(lease.market, lease.lease_id, lease.gpus, placed))
    moved = {(le.market, le.lease_id): le.gpu_indexes for le, before in zip(out, leases,
                                                                            strict=True)
             if le.gpu_indexes and le.gpu_indexes != before.gpu_indexes}
    left = {i for pool in spare.values() for i in pool}
    for (market, holder), idx in by_holder.items():  # a pod of no known lease: still its market's
        rest = tuple(i for i in idx if i in left)
        if rest:
            out.append(LeaseHold(market, holder, len(rest), rest))
    return out, moved


def power_limit_for(role: str, min_limit_w: float | None, default_limit_w: float | None
                    ) -> float | None:
    """Parked GPUs get the lowest allowed limit; working GPUs their default."""
    return min_limit_w if role == PARKED else default_limit_w
