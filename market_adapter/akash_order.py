"""An Akash order as the provider hands it to a bid-price script, parsed and checked.

The provider (provider-services, `bid-price-strategy: shellScript`, bidengine/shellscript.go)
encodes one order as one JSON line from its `dataForScript` (bidengine/pricing.go):
  {"resources": [{"memory": <bytes>, "cpu": <millicpu>, "gpu": {"units": N, "attributes":
    {"vendor": {"nvidia": {"model": "h200", "ram": "141Gi", "interface": "sxm"}}}},
    "storage": [{"class": "beta3", "size": <bytes>}], "count": N, "endpoint_quantity": N,
    "ip_lease_quantity": N}], "price": {"denom": "uact", "amount": "<decimal string>"},
  "price_precision": 6}

Every order goes through `parse_order`, a pure function that turns the JSON (bytes or already
decoded) into a checked `Order` or raises `FieldError` naming the bad field's path; pricing only
ever sees a checked order. The bounds are what the Akash network accepts (chain-sdk
go/node/deployment/v1beta4/validation_config.go). The field checks here are the ones the offer
uses too (akash_bid.py): one rule per kind of value.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal

GIB = 2**30
MIB = 2**20
TIB = 2**40
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


def interface_name(name: str) -> str:
    """A GPU interface as the provider's inventory spells it: lower-case, every SXM generation
    as `sxm` (provider cluster/types/v1beta3/types.go FilterGPUInterface)."""
    name = name.lower()
    return "sxm" if name.startswith("sxm") else name


class Decline(Exception):
    """The order is not for this rig now; the message says why."""


class FieldError(Decline):
    """A field of the order (or the offer) is malformed: `path` names it, the message says what
    is allowed."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path


@dataclass(frozen=True)
class GpuModel:
    """One vendor's GPU as the order asks for it; ram and interface only when the tenant's SDL
    names them (the provider passes them on only then: inventory.go tryAdjustGPU)."""

    vendor: str
    model: str  # lower-case, or "*" for any
    ram: str | None = None  # as the SDL spells it, e.g. "141Gi"
    interface: str | None = None  # "sxm" or "pcie", lower-case


@dataclass(frozen=True)
class GpuRequest:
    units: int
    models: tuple[GpuModel, ...] = ()  # one per vendor; empty: any GPU


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

def shown(value: object) -> str:
    """The bad value in a message: its kind for containers, short, always one line."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def as_object(value: object, path: str) -> dict:
    if not isinstance(value, dict):
        raise FieldError(path, f"must be an object, got {shown(value)}")
    if isinstance(value, _Duplicated):
        raise FieldError(f"{path}.{value.duplicate}", "appears twice")
    return value


def field_at(obj: dict, path: str, key: str) -> tuple[object, str]:
    """A required field and its path, to hand on to the check that fits it."""
    if key not in obj:
        raise FieldError(f"{path}.{key}", "is missing")
    return obj[key], f"{path}.{key}"


def _list(value: object, path: str, most: int, least: int = 0) -> list:
    if not isinstance(value, list):
        raise FieldError(path, f"must be a list, got {shown(value)}")
    if not least <= len(value) <= most:
        raise FieldError(path, f"must have {least} to {most} entries, got {len(value)}")
    return value


def whole(value: object, path: str, least: int, most: int) -> int:
    """A JSON integer within [least, most]: no bool, no float, not even 1.0."""
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise FieldError(path, f"must be a whole number from {least} to {most}, "
                               f"got {shown(value)}")
    return value


def finite(value: object, path: str, least: float, most: float) -> float:
    """A JSON number (integer or not) within [least, most]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and least <= value <= most):
        raise FieldError(path, f"must be a number from {least:g} to {most:g}, "
                               f"got {shown(value)}")
    return float(value)


def matching(value: object, path: str, pattern: re.Pattern, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise FieldError(path, f"must be {what}, got {shown(value)}")
    return value


def decimal_amount(value: object, path: str) -> Decimal:
    return Decimal(matching(value, path, AMOUNT, 'a decimal string like "1000.5" (at most 18 '
                                                "decimals)"))


# ---- the order ---------------------------------------------------------------------------------

def parse_order(doc: bytes | str | object) -> Order:
    """The order as the provider sends it (raw bytes, text or decoded JSON), checked and typed;
    FieldError names the first field that is wrong and what it allows."""
    if isinstance(doc, bytes | str):
        doc = load_json(doc, "order")
    order = as_object(doc, "order")
    price = as_object(*field_at(order, "order", "price"))
    services = tuple(_service(item, f"order.resources[{i}]") for i, item in enumerate(
        _list(*field_at(order, "order", "resources"), MAX_SERVICES, 1)))
    _check_group_totals(services)
    precision = DEFAULT_PRECISION
    if "price_precision" in order:
        precision = whole(*field_at(order, "order", "price_precision"), MIN_PRECISION,
                          MAX_PRECISION)
    max_amount = decimal_amount(*field_at(price, "order.price", "amount"))
    replicas = sum(s.count for s in services)
    if max_amount > MAX_UNIT_PRICE * replicas:
        raise FieldError("order.price.amount", f"must be at most {MAX_UNIT_PRICE} per replica "
                         f"({replicas} replicas), got {shown(price['amount'])}")
    denom = matching(*field_at(price, "order.price", "denom"), DENOM,
                     "a coin denomination such as uact")
    return Order(services, denom, max_amount, precision)


def _service(value: object, path: str) -> Service:
    group = as_object(value, path)

    def count(key: str, least: int, most: int) -> int:
        return whole(*field_at(group, path, key), least, most)

    storage = _list(*field_at(group, path, "storage"), MAX_VOLUMES)
    return Service(
        count=count("count", 1, MAX_COUNT),
        cpu_milli=count("cpu", MIN_UNIT_CPU_MILLI, MAX_UNIT_CPU_MILLI),
        memory_bytes=count("memory", MIN_UNIT_MEMORY_BYTES, MAX_UNIT_MEMORY_BYTES),
        gpu=_gpu(*field_at(group, path, "gpu")),
        storage=tuple(_volume(v, f"{path}.storage[{j}]") for j, v in enumerate(storage)),
        endpoints=count("endpoint_quantity", 0, MAX_ENDPOINTS),
        ip_leases=count("ip_lease_quantity", 0, MAX_ENDPOINTS))


def _gpu(value: object, path: str) -> GpuRequest:
    gpu = as_object(value, path)
    units = whole(*field_at(gpu, path, "units"), 0, MAX_UNIT_GPUS)
    attributes = as_object(*field_at(gpu, path, "attributes"))
    vendors = as_object(attributes.get("vendor", {}), f"{path}.attributes.vendor")
    if len(vendors) > MAX_VENDORS:
        raise FieldError(f"{path}.attributes.vendor", f"must name at most {MAX_VENDORS} vendors, "
                                                      f"got {len(vendors)}")
    return GpuRequest(units, tuple(_vendor_model(name, spec, f"{path}.attributes.vendor")
                                   for name, spec in vendors.items()))


def _vendor_model(name: str, value: object, path: str) -> GpuModel:
    vendor = matching(name, path, TOKEN, "keyed by vendor names such as nvidia")
    spec = as_object(value, f"{path}.{vendor}")
    extra = {}
    for key in ("ram", "interface"):
        if key in spec:
            extra[key] = matching(spec[key], f"{path}.{vendor}.{key}", TOKEN,
                                  "a short name such as 80Gi or sxm").lower()
    if "interface" in extra:
        extra["interface"] = interface_name(extra["interface"])
    # the provider always names a model ("*" for any); an absent one means any as well
    model = matching(spec.get("model", WILDCARD), f"{path}.{vendor}.model", TOKEN,
                     "a GPU model such as h200, or *")
    return GpuModel(vendor.lower(), model.lower(), **extra)


def _volume(value: object, path: str) -> Volume:
    vol = as_object(value, path)
    size = whole(*field_at(vol, path, "size"), MIN_UNIT_STORAGE_BYTES, MAX_UNIT_STORAGE_BYTES)
    cls = matching(*field_at(vol, path, "class"), TOKEN, "a storage class name such as beta3")
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


