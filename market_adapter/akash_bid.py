"""The Akash provider's bid-price script: price one order from the agent's current offer.

The provider (provider-services, `bid-price-strategy: shellScript`, bidengine/shellscript.go)
runs this with no arguments, `AKASH_OWNER` and `AKASH_DENOM` in the environment and one order on
stdin, one JSON line that Go encodes from its `dataForScript` (bidengine/pricing.go):
  {"resources": [{"memory": <bytes>, "cpu": <millicpu>, "gpu": {"units": N, "attributes":
    {"vendor": {"nvidia": {"model": "h200", "ram": "141Gi", "interface": "sxm"}}}},
    "storage": [{"class": "beta3", "size": <bytes>}], "count": N, "endpoint_quantity": N,
    "ip_lease_quantity": N}], "price": {"denom": "uact", "amount": "<decimal string>"},
  "price_precision": 6}
It prints one number, the price per block for the whole group in the order's denom, or exits 1
with one line on stderr saying why, to decline. The provider allows it ten seconds; it takes a
few milliseconds of work, so it imports nothing beyond the standard library's basics.

Every order goes through `parse_order` first, a pure function that turns the JSON (bytes or
already decoded) into a checked `Order` or raises `FieldError` naming the bad field's path; the
pricing only ever sees a checked order. The bounds are what the Akash network accepts
(chain-sdk go/node/deployment/v1beta4/validation_config.go).

The offer is a JSON file the agent rewrites atomically every minute:
  {"valid_until": "<ISO time>", "akash": {"gpus_available": N, "tee": bool,
   "floor_usd_per_gpu_hour": {"h200": 2.1, "*": 2.1}, "cpu_usd_per_core_hour": x,
   "memory_usd_per_gib_hour": x, "storage_usd_per_gib_month": {"beta3": x, ...},
   "endpoint_usd_per_month": x, "ip_usd_per_month": x, "margin_pct": x, "block_seconds": 6.117,
   "akt_usd": x}}
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal, localcontext

DEFAULT_OFFER = "/var/lib/sunrig/akash-offer.json"
BLOCK_SECONDS = 6.117
HOURS_PER_MONTH = 30.437 * 24
GIB = 2**30
MIB = 2**20
TIB = 2**40
MICRO = 1_000_000
WILDCARD = "*"

# What one replica may ask for, and the whole group, as the chain validates deployments.
MAX_UNIT_CPU_MILLI = 384_000
MIN_UNIT_CPU_MILLI = 10
MAX_UNIT_GPUS = 24
MAX_UNIT_MEMORY_BYTES = 2 * TIB
MIN_UNIT_MEMORY_BYTES = MIB
MAX_UNIT_STORAGE_BYTES = 32 * TIB
MIN_UNIT_STORAGE_BYTES = 5 * MIB
MAX_UNIT_PRICE = 10_000_000  # per replica and block, in the denom's micro unit
GROUP_REPLICAS = 50  # the group totals are these many replicas at the per-replica maximum
MAX_COUNT = 2**32 - 1  # the provider sends `count` as a uint32
# Not chain rules but plausibility: a real order is a few hundred bytes per service.
MAX_ORDER_BYTES = 2**20
MAX_SERVICES = 100
MAX_VOLUMES = 32
MAX_VENDORS = 8
MAX_ENDPOINTS = 65_535  # one per port at most
# The provider sends price_precision only when positive (shellscript.go) and parses the answer
# as a cosmos LegacyDec, which holds 18 decimals.
MIN_PRECISION, MAX_PRECISION, DEFAULT_PRECISION = 1, 18, 6
MAX_INT_DIGITS = 24  # longer integer literals are read as floats: no 4300-digit parse

DENOM = re.compile(r"[a-zA-Z][a-zA-Z0-9/:._-]{2,127}")  # cosmos-sdk's denom rule
TOKEN = re.compile(r"[A-Za-z0-9*][A-Za-z0-9._+*-]{0,63}")  # a name inside an attribute key
AMOUNT = re.compile(r"[0-9]{1,30}(\.[0-9]{1,18})?")  # a LegacyDec as Go writes it


class Decline(Exception):
    """The order is not for this rig now; the message says why."""


class FieldError(Decline):
    """A field of the order (or the offer) is malformed: `path` names it, the message says what
    is allowed."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path


@dataclass(frozen=True)
class GpuRequest:
    units: int
    models: tuple[tuple[str, str], ...]  # (vendor, lower-case model or "*"); empty: any GPU


@dataclass(frozen=True)
class Volume:
    storage_class: str
    size_bytes: int


@dataclass(frozen=True)
class Service:
    """One resource group of the order: `count` replicas of the same unit."""

    count: int
    cpu_milli: int
    memory_bytes: int
    gpu: GpuRequest
    storage: tuple[Volume, ...]
    endpoints: int
    ip_leases: int


@dataclass(frozen=True)
class Order:
    services: tuple[Service, ...]
    denom: str
    max_amount: Decimal  # the tenant's most per block for the whole group, in `denom`
    price_precision: int

    @property
    def gpus(self) -> int:
        return sum(s.gpu.units * s.count for s in self.services)


# ---- reading JSON ------------------------------------------------------------------------------

class _Duplicated(dict):
    """An object in which a key appeared twice: JSON readers disagree on which one wins."""

    duplicate = ""


def _object_pairs(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            out = _Duplicated(out)
            out.duplicate = key
        out[key] = value
    return out


def _json_int(text: str) -> int | float:
    # a float (inf beyond its range) is refused by every check as it should be, with the
    # field's path; int() would raise on 4300 digits before any field is known
    return int(text) if len(text) <= MAX_INT_DIGITS else float(text)


def load_json(raw: bytes | str, path: str) -> object:
    """Decode one JSON document of bounded size, or raise FieldError at `path`."""
    if len(raw) > MAX_ORDER_BYTES:
        raise FieldError(path, f"is {len(raw)} bytes, more than the {MAX_ORDER_BYTES} allowed")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FieldError(path, f"is not UTF-8 text (byte {exc.start})") from None
    if not raw.strip():
        raise FieldError(path, "is empty, expected one JSON object")
    try:
        return json.loads(raw, object_pairs_hook=_object_pairs, parse_int=_json_int)
    except RecursionError:
        raise FieldError(path, "is nested too deeply") from None
    except ValueError as exc:
        raise FieldError(path, f"is not JSON: {exc}") from None


# ---- checking fields ---------------------------------------------------------------------------

def _shown(value: object) -> str:
    """The bad value in a message: its kind for containers, short, always one line."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _object(value: object, path: str) -> dict:
    if not isinstance(value, dict):
        raise FieldError(path, f"must be an object, got {_shown(value)}")
    if isinstance(value, _Duplicated):
        raise FieldError(f"{path}.{value.duplicate}", "appears twice")
    return value


def _at(obj: dict, path: str, key: str) -> tuple[object, str]:
    """A required field and its path, to hand on to the check that fits it."""
    if key not in obj:
        raise FieldError(f"{path}.{key}", "is missing")
    return obj[key], f"{path}.{key}"


def _list(value: object, path: str, most: int, least: int = 0) -> list:
    if not isinstance(value, list):
        raise FieldError(path, f"must be a list, got {_shown(value)}")
    if not least <= len(value) <= most:
        raise FieldError(path, f"must have {least} to {most} entries, got {len(value)}")
    return value


def _whole(value: object, path: str, least: int, most: int) -> int:
    """A JSON integer within [least, most]: no bool, no float, not even 1.0."""
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise FieldError(path, f"must be a whole number from {least} to {most}, "
                               f"got {_shown(value)}")
    return value


def _finite(value: object, path: str, least: float, most: float) -> float:
    """A JSON number (integer or not) within [least, most]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and least <= value <= most):
        raise FieldError(path, f"must be a number from {least:g} to {most:g}, "
                               f"got {_shown(value)}")
    return float(value)


def _text(value: object, path: str, pattern: re.Pattern, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise FieldError(path, f"must be {what}, got {_shown(value)}")
    return value


def _amount(value: object, path: str) -> Decimal:
    return Decimal(_text(value, path, AMOUNT, 'a decimal string like "1000.5" (at most 18 '
                                                "decimals)"))


# ---- the order ---------------------------------------------------------------------------------

def parse_order(doc: bytes | str | object) -> Order:
    """The order as the provider sends it (raw bytes, text or decoded JSON), checked and typed;
    FieldError names the first field that is wrong and what it allows."""
    if isinstance(doc, bytes | str):
        doc = load_json(doc, "order")
    order = _object(doc, "order")
    price = _object(*_at(order, "order", "price"))
    services = tuple(_service(item, f"order.resources[{i}]") for i, item in enumerate(
        _list(*_at(order, "order", "resources"), MAX_SERVICES, 1)))
    _check_group_totals(services)
    precision = DEFAULT_PRECISION
    if "price_precision" in order:
        precision = _whole(*_at(order, "order", "price_precision"), MIN_PRECISION,
                           MAX_PRECISION)
    max_amount = _amount(*_at(price, "order.price", "amount"))
    replicas = sum(s.count for s in services)
    if max_amount > MAX_UNIT_PRICE * replicas:
        raise FieldError("order.price.amount", f"must be at most {MAX_UNIT_PRICE} per replica "
                         f"({replicas} replicas), got {_shown(price['amount'])}")
    denom = _text(*_at(price, "order.price", "denom"), DENOM, "a coin denomination such as uact")
    return Order(services, denom, max_amount, precision)


def _service(value: object, path: str) -> Service:
    group = _object(value, path)

    def count(key: str, least: int, most: int) -> int:
        return _whole(*_at(group, path, key), least, most)

    storage = _list(*_at(group, path, "storage"), MAX_VOLUMES)
    return Service(
        count=count("count", 1, MAX_COUNT),
        cpu_milli=count("cpu", MIN_UNIT_CPU_MILLI, MAX_UNIT_CPU_MILLI),
        memory_bytes=count("memory", MIN_UNIT_MEMORY_BYTES, MAX_UNIT_MEMORY_BYTES),
        gpu=_gpu(*_at(group, path, "gpu")),
        storage=tuple(_volume(v, f"{path}.storage[{j}]") for j, v in enumerate(storage)),
        endpoints=count("endpoint_quantity", 0, MAX_ENDPOINTS),
        ip_leases=count("ip_lease_quantity", 0, MAX_ENDPOINTS))


def _gpu(value: object, path: str) -> GpuRequest:
    gpu = _object(value, path)
    units = _whole(*_at(gpu, path, "units"), 0, MAX_UNIT_GPUS)
    attributes = _object(*_at(gpu, path, "attributes"))
    vendors = _object(attributes.get("vendor", {}), f"{path}.attributes.vendor")
    if len(vendors) > MAX_VENDORS:
        raise FieldError(f"{path}.attributes.vendor", f"must name at most {MAX_VENDORS} vendors, "
                                                      f"got {len(vendors)}")
    return GpuRequest(units, tuple(_vendor_model(name, spec, f"{path}.attributes.vendor")
                                   for name, spec in vendors.items()))


def _vendor_model(name: str, value: object, path: str) -> tuple[str, str]:
    vendor = _text(name, path, TOKEN, "keyed by vendor names such as nvidia")
    spec = _object(value, f"{path}.{vendor}")
    for key in ("ram", "interface"):  # not priced, but a wrong type is a malformed order
        if key in spec:
            _text(spec[key], f"{path}.{vendor}.{key}", TOKEN, "a short name such as 80Gi or sxm")
    # the provider always names a model ("*" for any); an absent one means any as well
    model = _text(spec.get("model", WILDCARD), f"{path}.{vendor}.model", TOKEN,
                  "a GPU model such as h200, or *")
    return vendor, model.lower()


def _volume(value: object, path: str) -> Volume:
    vol = _object(value, path)
    size = _whole(*_at(vol, path, "size"), MIN_UNIT_STORAGE_BYTES, MAX_UNIT_STORAGE_BYTES)
    cls = _text(*_at(vol, path, "class"), TOKEN, "a storage class name such as beta3")
    return Volume(cls, size)


def _check_group_totals(services: tuple[Service, ...]) -> None:
    """The chain's limits on the whole group: every replica of every service together."""
    totals = {"cpu": (sum(s.cpu_milli * s.count for s in services), MAX_UNIT_CPU_MILLI),
              "gpu.units": (sum(s.gpu.units * s.count for s in services), MAX_UNIT_GPUS),
              "memory": (sum(s.memory_bytes * s.count for s in services),
                         MAX_UNIT_MEMORY_BYTES)}
    for name, (total, unit_most) in totals.items():
        if total > unit_most * GROUP_REPLICAS:
            raise FieldError(f"order.resources[*].{name}", f"times count must total at most "
                             f"{unit_most * GROUP_REPLICAS}, got {total}")
    for i, s in enumerate(services):
        for j, vol in enumerate(s.storage):
            if vol.size_bytes * s.count > MAX_UNIT_STORAGE_BYTES * GROUP_REPLICAS:
                raise FieldError(f"order.resources[{i}].storage[{j}].size", "times count must "
                                 f"total at most {MAX_UNIT_STORAGE_BYTES * GROUP_REPLICAS}")


# ---- the offer ---------------------------------------------------------------------------------

MAX_USD = 1e6  # per GPU-hour, core-hour, GiB-month or endpoint-month: far above any real price


@dataclass(frozen=True)
class Offer:
    """The agent's offer file, checked: what is free now and what everything costs (USD)."""

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


def parse_offer(doc: object) -> Offer:
    """The offer document the agent writes, checked and typed; FieldError names a bad field."""
    offer = _object(doc, "offer")
    akash = _object(*_at(offer, "offer", "akash"))

    def usd(key: str, least: float = 0.0, most: float = MAX_USD, default: float = 0.0) -> float:
        return _finite(akash.get(key, default), f"offer.akash.{key}", least, most)

    return Offer(
        valid_until=_time(*_at(offer, "offer", "valid_until")),
        gpus_available=_whole(akash.get("gpus_available", 0), "offer.akash.gpus_available", 0,
                             MAX_UNIT_GPUS * GROUP_REPLICAS),
        floor_usd_per_gpu_hour=_price_table(akash, "floor_usd_per_gpu_hour"),
        cpu_usd_per_core_hour=usd("cpu_usd_per_core_hour"),
        memory_usd_per_gib_hour=usd("memory_usd_per_gib_hour"),
        storage_usd_per_gib_month=_price_table(akash, "storage_usd_per_gib_month"),
        endpoint_usd_per_month=usd("endpoint_usd_per_month"),
        ip_usd_per_month=usd("ip_usd_per_month"),
        margin_pct=usd("margin_pct", most=1000.0),  # the config's bounds
        block_seconds=usd("block_seconds", 0.1, 600.0, BLOCK_SECONDS),
        akt_usd=usd("akt_usd"))


def _price_table(akash: dict, key: str) -> tuple[tuple[str, float], ...]:
    path = f"offer.akash.{key}"
    table = _object(akash.get(key, {}), path)
    return tuple((_text(name, path, TOKEN, "keyed by short names").lower(),
                  _finite(usd, f"{path}.{name}", 0.0, MAX_USD)) for name, usd in table.items())


def _time(value: object, path: str) -> datetime:
    try:
        ts = datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FieldError(path, f"must be an ISO 8601 time, got {_shown(value)}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


# ---- pricing -----------------------------------------------------------------------------------

def price_order(order: Order, offer: Offer, now: datetime) -> str:
    """The bid for the whole group per block, formatted to the order's precision."""
    if now > offer.valid_until:
        raise Decline(f"offer expired at {offer.valid_until.isoformat()}: is the sunrig agent "
                      "running?")
    usd_per_hour = sum(_service_usd_per_hour(s, offer) for s in order.services)
    if order.gpus > offer.gpus_available:
        raise Decline(f"order asks for {order.gpus} GPU(s), {offer.gpus_available} available")
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
    storage_prices = dict(offer.storage_usd_per_gib_month)
    for vol in s.storage:
        cls = "ephemeral" if vol.storage_class == "default" else vol.storage_class
        if cls not in storage_prices:
            raise Decline(f"storage class {cls!r} is not offered")
        usd += vol.size_bytes / GIB * storage_prices[cls] / HOURS_PER_MONTH
    usd += s.endpoints * offer.endpoint_usd_per_month / HOURS_PER_MONTH
    usd += s.ip_leases * offer.ip_usd_per_month / HOURS_PER_MONTH
    return usd * s.count


def _gpu_floor(gpu: GpuRequest, offer: Offer) -> float:
    floors = dict(offer.floor_usd_per_gpu_hour)
    models = dict(gpu.models)
    if models and "nvidia" not in models:
        raise Decline(f"GPU vendor {', '.join(models)} is not offered")
    model = models.get("nvidia", WILDCARD)
    if model == WILDCARD:  # any GPU will do: it gets ours, at the wildcard price
        if WILDCARD in floors:
            return floors[WILDCARD]
        if not floors:
            raise Decline("the offer prices no GPU")
        return max(floors.values())
    if model not in floors:
        raise Decline(f"GPU model {model!r} is not on this rig")
    return floors[model]


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
