"""The price of one Akash order from the agent's current offer.

The Akash provider asks for a price per order (bid-price strategy `shellScript`); the script it
runs asks the agent's bid endpoint (akash_bid_server.py), which prices with `price_order` here
from the offer the agent holds in memory. The same pricing runs as a stdin command for debugging
(`sunrig akash price-script`, or `python -m market_adapter.akash_bid`), reading the offer file the
agent also writes: it prints one number, the price per block for the whole group in the order's
denom, or exits 1 with one line on stderr saying why it declines.

The offer document (the file, and what the agent holds):
  {"valid_until": "<ISO time>", "akash": {"gpus_available": N, "tee": bool,
   "floor_usd_per_gpu_hour": {"h200": 2.1, "*": 2.1}, "gpu_ram": "141Gi", "gpu_interface": "sxm",
   "cpu_usd_per_core_hour": x, "memory_usd_per_gib_hour": x,
   "storage_usd_per_gib_month": {"beta3": x, ...}, "endpoint_usd_per_month": x,
   "ip_usd_per_month": x, "margin_pct": x, "block_seconds": 6.117, "akt_usd": x}}
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal, localcontext

from market_adapter.akash_order import (
    GIB,
    GROUP_REPLICAS,
    MAX_ORDER_BYTES,
    MAX_UNIT_GPUS,
    TOKEN,
    WILDCARD,
    Decline,
    FieldError,
    GpuModel,
    GpuRequest,
    Order,
    Service,
    as_object,
    field_at,
    finite,
    load_json,
    matching,
    parse_order,
    shown,
    whole,
)

DEFAULT_OFFER = "/var/lib/sunrig/akash-offer.json"
BLOCK_SECONDS = 6.117
HOURS_PER_MONTH = 30.437 * 24
MICRO = 1_000_000
# `ram` volumes are shared memory (/dev/shm): the provider counts them against the node's memory,
# not its disks (provider cluster/kube/operators/clients/inventory/inventory.go), so they are
# priced as memory; `default` is the provider's default class, priced as ephemeral disk.
MEMORY_CLASS = "ram"
CLASS_PRICED_AS = {"default": "ephemeral"}


# ---- the offer ---------------------------------------------------------------------------------

MAX_USD = 1e6  # per GPU-hour, core-hour, GiB-month or endpoint-month: far above any real price


@dataclass(frozen=True)
class Offer:
    """The agent's offer, checked: what is free now, what the GPUs are and what everything costs
    (USD)."""

    valid_until: datetime
    gpus_available: int
    floor_usd_per_gpu_hour: tuple[tuple[str, float], ...]  # lower-case model or "*"
    cpu_usd_per_core_hour: float
    memory_usd_per_gib_hour: float
    storage_usd_per_gib_month: tuple[tuple[str, float], ...]
    endpoint_usd_per_month: float
    ip_usd_per_month: float
    margin_pct: float
    block_seconds: float
    akt_usd: float
    gpu_ram: str | None = None  # lower-case, as Akash spells it ("141gi"); None: not checked
    gpu_interface: str | None = None  # "sxm" or "pcie"; None: not checked


def parse_offer(doc: object) -> Offer:
    """The offer document the agent writes, checked and typed; FieldError names a bad field."""
    offer = as_object(doc, "offer")
    akash = as_object(*field_at(offer, "offer", "akash"))

    def usd(key: str, least: float = 0.0, most: float = MAX_USD, default: float = 0.0) -> float:
        return finite(akash.get(key, default), f"offer.akash.{key}", least, most)

    return Offer(
        valid_until=_time(*field_at(offer, "offer", "valid_until")),
        gpus_available=whole(akash.get("gpus_available", 0), "offer.akash.gpus_available", 0,
                             MAX_UNIT_GPUS * GROUP_REPLICAS),
        floor_usd_per_gpu_hour=_price_table(akash, "floor_usd_per_gpu_hour"),
        cpu_usd_per_core_hour=usd("cpu_usd_per_core_hour"),
        memory_usd_per_gib_hour=usd("memory_usd_per_gib_hour"),
        storage_usd_per_gib_month=_price_table(akash, "storage_usd_per_gib_month"),
        endpoint_usd_per_month=usd("endpoint_usd_per_month"),
        ip_usd_per_month=usd("ip_usd_per_month"),
        margin_pct=usd("margin_pct", most=1000.0),  # the config's bounds
        block_seconds=usd("block_seconds", 0.1, 600.0, BLOCK_SECONDS),
        akt_usd=usd("akt_usd"),
        gpu_ram=_optional_name(akash, "gpu_ram"),
        gpu_interface=_optional_name(akash, "gpu_interface"))


def _price_table(akash: dict, key: str) -> tuple[tuple[str, float], ...]:
    path = f"offer.akash.{key}"
    table = as_object(akash.get(key, {}), path)
    return tuple((matching(name, path, TOKEN, "keyed by short names").lower(),
                  finite(usd, f"{path}.{name}", 0.0, MAX_USD)) for name, usd in table.items())


def _optional_name(akash: dict, key: str) -> str | None:
    value = akash.get(key)
    if value is None:
        return None
    return matching(value, f"offer.akash.{key}", TOKEN, "a short name such as 141Gi or sxm"
                    ).lower()


def _time(value: object, path: str) -> datetime:
    try:
        ts = datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FieldError(path, f"must be an ISO 8601 time, got {shown(value)}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


# ---- pricing -----------------------------------------------------------------------------------

def price_order(order: Order, offer: Offer, now: datetime) -> str:
    """The bid for the whole group per block, formatted to the order's precision; Decline says
    why there is none."""
    if now > offer.valid_until:
        raise Decline(f"offer is stale: it expired at {offer.valid_until.isoformat()}; is the "
                      "sunrig agent running and planning?")
    usd_per_hour = sum(_service_usd_per_hour(s, offer) for s in order.services)
    if order.gpus > offer.gpus_available:
        raise Decline(f"order asks for {order.gpus} GPUs, {offer.gpus_available} free")
    usd_per_hour *= 1.0 + offer.margin_pct / 100.0
    per_block = usd_per_hour * offer.block_seconds / 3600.0 * MICRO / _usd_per_unit(
        order.denom, offer)
    if not math.isfinite(per_block):
        raise Decline(f"the order prices beyond any number ({per_block}) in {order.denom}")
    with localcontext() as ctx:
        ctx.prec = 80  # room for every digit of 18 decimals on a large price
        bid = Decimal(repr(per_block)).quantize(Decimal(1).scaleb(-order.price_precision),
                                                rounding=ROUND_CEILING)
    if bid <= 0:  # the provider refuses a zero bid; nothing here is priced
        raise Decline("the order prices to zero: the offer prices none of what it asks for")
    if bid > order.max_amount:
        raise Decline(f"tenant max {order.max_amount} {order.denom} per block is below the "
                      f"floor {bid}")
    return f"{bid:.{order.price_precision}f}"


def price_request(body: bytes, offer: Offer | None, now: datetime,
                  share: AkashShare | None = None) -> str:
    """One order as the provider sent it, priced from the agent's current offer and, where
    given, within Akash's share of the plan: the bid endpoint's work. Decline (FieldError for a
    malformed order) says why there is no price."""
    order = parse_order(body)
    if offer is None:
        raise Decline("no offer yet: the agent has not planned since it started")
    if share is None:
        return price_order(order, offer, now)
    return share.bid(order.gpus, lambda: price_order(order, offer, now))


# ---- Akash's share -----------------------------------------------------------------------------

# The provider withdraws a bid no lease took after --bid-timeout, 5 minutes unless set otherwise
# (provider cmd/provider-services/cmd/flags.go FlagBidTimeout; bidengine/order.go closes it);
# a bid that won shows as a lease at the agent's next chain sync, a minute or two later.
BID_OPEN_S = 300.0 + 120.0


class AkashShare:
    """The plan's split, held for the bid endpoint: an order is bid only while its GPUs, added
    to those Akash's leases hold and to those of bids still open, fit the GPUs the plan gives
    Akash now. The offer alone cannot say this: it is renewed once a minute, while the provider
    may ask for several orders within that minute, and each would fit on its own.

    The agent calls `update` each time it applies the plan; the endpoint calls `bid`."""

    def __init__(self, bid_open_s: float = BID_OPEN_S,
                 clock: Callable[[], float] = time.monotonic):
        self.bid_open_s, self.clock = bid_open_s, clock
        self.planned_gpus: int | None = None  # None: the agent has not applied a plan yet
        self.leased_gpus = 0
        self._open: list[tuple[float, int]] = []  # (until, GPUs) of bids no lease took yet
        self._lock = threading.Lock()

    def update(self, planned_gpus: int, leased_gpus: int) -> None:
        """The plan's Akash GPUs now (leased ones included) and those Akash's leases hold. A
        rise in leased GPUs is bids that won: the oldest open bids close by as many GPUs."""
        if planned_gpus < 0 or leased_gpus < 0:
            raise ValueError(f"GPU counts cannot be negative ({planned_gpus}, {leased_gpus})")
        with self._lock:
            won = max(0, leased_gpus - self.leased_gpus) if self.planned_gpus is not None else 0
            self.planned_gpus, self.leased_gpus = planned_gpus, leased_gpus
            while won > 0 and self._open:
                until, gpus = self._open.pop(0)
                if gpus > won:
                    self._open.insert(0, (until, gpus - won))
                won -= gpus

    def open_gpus(self) -> int:
        """GPUs in bids still open (no lease yet, not timed out)."""
        with self._lock:
            return self._expire()

    def bid(self, gpus: int, price: Callable[[], str]) -> str:
        """`price()` when `gpus` fit the share (the bid is then counted open), else Decline."""
        with self._lock:
            if self.planned_gpus is None:
                raise Decline("no share yet: the agent has not applied a plan since it started")
            pending = self._expire()
            room = self.planned_gpus - self.leased_gpus - pending
            if gpus > room:
                raise Decline(f"order asks for {gpus} GPUs, beyond Akash's share: the plan gives "
                              f"Akash {self.planned_gpus}, its leases hold {self.leased_gpus}, "
                              f"open bids {pending}")
            answer = price()  # a Decline here leaves no open bid behind
            if gpus:
                self._open.append((self.clock() + self.bid_open_s, gpus))
            return answer

    def _expire(self) -> int:
        now = self.clock()
        self._open = [(until, gpus) for until, gpus in self._open if until > now]
        return sum(gpus for _, gpus in self._open)


def _usd_per_unit(denom: str, offer: Offer) -> float:
    """USD per whole coin of the order's denom (the bid is in its micro unit)."""
    if denom == "uact":  # ACT is pegged to the US dollar
        return 1.0
    if denom == "uakt":
        if offer.akt_usd < 1e-6:
            raise Decline("denom uakt needs an AKT price in the offer (markets.akash.akt_usd)")
        return offer.akt_usd
    raise Decline(f"denom {denom!r} is not supported (uact, uakt)")


def _service_usd_per_hour(s: Service, offer: Offer) -> float:
    """One service: USD per hour for all `count` replicas."""
    usd = s.gpu.units * _gpu_floor(s.gpu, offer) if s.gpu.units else 0.0
    usd += s.cpu_milli / 1000.0 * offer.cpu_usd_per_core_hour
    usd += s.memory_bytes / GIB * offer.memory_usd_per_gib_hour
    for vol in s.storage:
        usd += _volume_usd_per_hour(vol.storage_class, vol.size_bytes, offer)
    usd += s.endpoints * offer.endpoint_usd_per_month / HOURS_PER_MONTH
    usd += s.ip_leases * offer.ip_usd_per_month / HOURS_PER_MONTH
    return usd * s.count


def _volume_usd_per_hour(storage_class: str, size_bytes: int, offer: Offer) -> float:
    if storage_class == MEMORY_CLASS:
        return size_bytes / GIB * offer.memory_usd_per_gib_hour
    cls = CLASS_PRICED_AS.get(storage_class, storage_class)
    prices = dict(offer.storage_usd_per_gib_month)
    if cls not in prices:
        raise Decline(f"storage class {cls!r} is not offered")
    return size_bytes / GIB * prices[cls] / HOURS_PER_MONTH


def _gpu_floor(gpu: GpuRequest, offer: Offer) -> float:
    floors = dict(offer.floor_usd_per_gpu_hour)
    wanted = {m.vendor: m for m in gpu.models}
    if wanted and "nvidia" not in wanted:
        raise Decline(f"GPU vendor {', '.join(wanted)} not on this rig")
    spec = wanted.get("nvidia", GpuModel("nvidia", WILDCARD))
    if spec.model == WILDCARD:  # any GPU will do: it gets ours, at the wildcard price
        if not floors:
            raise Decline("the offer prices no GPU")
        floor = floors.get(WILDCARD, max(floors.values()))
    elif spec.model not in floors:
        raise Decline(f"GPU model {spec.model!r} is not on this rig")
    else:
        floor = floors[spec.model]
    _check_gpu_attributes(spec, offer)
    return floor


def _check_gpu_attributes(spec: GpuModel, offer: Offer) -> None:
    """The GPU memory and interface the tenant's SDL names must be the rig's."""
    unmet = [f"{name} {asked} (the rig's GPUs: {have})"
             for name, asked, have in (("ram", spec.ram, offer.gpu_ram),
                                       ("interface", spec.interface, offer.gpu_interface))
             if asked not in (None, WILDCARD) and have is not None and asked != have]
    if unmet:
        raise Decline(f"attributes the rig cannot meet: {'; '.join(unmet)}")


# ---- the script --------------------------------------------------------------------------------

def load_offer(path: str) -> Offer:
    """The offer file, read and checked; a Decline says what is wrong with it."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_ORDER_BYTES + 1)
    except FileNotFoundError:
        raise Decline(f"no offer at {path}: is the sunrig agent running?") from None
    except OSError as exc:
        raise Decline(f"offer {path} is unreadable: {exc.strerror}") from None
    try:
        return parse_offer(load_json(raw, "offer"))
    except FieldError as exc:
        raise Decline(f"offer {path} is unusable: {exc}") from None


def _read_stdin() -> bytes:
    """At most one byte more than an order may have: a flood is refused, not buffered."""
    stream = getattr(sys.stdin, "buffer", None)
    return stream.read(MAX_ORDER_BYTES + 1) if stream is not None else b""


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = os.environ.get("SUNRIG_AKASH_OFFER", DEFAULT_OFFER)
    if "--offer" in args:
        at = args.index("--offer")
        if at + 1 >= len(args):
            print("decline: --offer needs a file", file=sys.stderr)
            return 2
        path = args[at + 1]
    owner = os.environ.get("AKASH_OWNER", "?")
    try:
        raw = _read_stdin()
        offer = load_offer(path)
        print(price_order(parse_order(raw), offer, datetime.now(UTC)))
        return 0
    except Decline as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - the provider logs stderr: one line, no traceback
        reason = f"internal error: {type(exc).__name__}: {exc}"
    print(_one_line(f"decline ({owner}): {reason}"), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
