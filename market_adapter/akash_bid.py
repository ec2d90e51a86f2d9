"""The Akash provider's bid-price script: price one order from the agent's current offer.

The provider (provider-services, `bid-price-strategy: shellScript`) runs this with no arguments,
`AKASH_OWNER` and `AKASH_DENOM` in the environment and one order on stdin:
  {"resources": [{"cpu": <millicpu>, "memory": <bytes>, "gpu": {"units": N, "attributes":
    {"vendor": {"nvidia": {"model": "h200", "ram": "141Gi", "interface": "sxm"}}}},
    "storage": [{"class": "beta3", "size": <bytes>}], "count": N, "endpoint_quantity": N,
    "ip_lease_quantity": N}], "price": {"denom": "uact", "amount": "<tenant max per block>"},
  "price_precision": 6}
It prints one number, the price per block for the whole group in the order's denom, or exits 1
with the reason on stderr to decline. The provider allows it ten seconds; it takes a few
milliseconds of work, so it imports nothing beyond the standard library's basics.

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
import sys
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal, InvalidOperation

DEFAULT_OFFER = "/var/lib/sunrig/akash-offer.json"
BLOCK_SECONDS = 6.117
HOURS_PER_MONTH = 30.437 * 24
GIB = 2**30
MICRO = 1_000_000
WILDCARD = "*"


class Decline(Exception):
    """The order is not for this rig now; the message says why."""


def price_order(order: dict, offer: dict, now: datetime, denom_env: str | None = None) -> str:
    """The bid for the whole group per block, formatted to the order's precision."""
    akash = _offer_for_now(offer, now)
    price = order.get("price")
    if not isinstance(price, dict):
        raise Decline("order has no price")
    denom = str(price.get("denom") or denom_env or "")
    try:
        tenant_max = Decimal(str(price.get("amount")))
    except InvalidOperation:
        raise Decline(f"order price amount {price.get('amount')!r} is not a number") from None
    resources = order.get("resources")
    if not isinstance(resources, list) or not resources:
        raise Decline("order has no resources")
    usd_per_hour, gpus = 0.0, 0
    for i, group in enumerate(resources):
        group_usd, group_gpus = _resource_usd_per_hour(group, akash, i)
        usd_per_hour += group_usd
        gpus += group_gpus
    if gpus > int(akash.get("gpus_available", 0)):
        raise Decline(f"order asks for {gpus} GPU(s), {akash.get('gpus_available', 0)} available")
    usd_per_hour *= 1.0 + float(akash.get("margin_pct", 0.0)) / 100.0
    block_s = float(akash.get("block_seconds", BLOCK_SECONDS))
    per_block = Decimal(repr(usd_per_hour * block_s / 3600.0 * MICRO / _usd_per_unit(
        denom, akash)))
    precision = int(order.get("price_precision", 6))
    bid = per_block.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_CEILING)
    if bid > tenant_max:
        raise Decline(f"tenant max {tenant_max} {denom} per block is below the floor {bid}")
    return f"{bid:.{precision}f}"


def _offer_for_now(offer: dict, now: datetime) -> dict:
    try:
        valid_until = datetime.fromisoformat(offer["valid_until"])
    except (KeyError, TypeError, ValueError):
        raise Decline("offer has no valid_until time") from None
    if valid_until.tzinfo is None:
        valid_until = valid_until.replace(tzinfo=UTC)
    if now > valid_until:
        raise Decline(f"offer expired at {offer['valid_until']}: is the sunrig agent running?")
    akash = offer.get("akash")
    if not isinstance(akash, dict):
        raise Decline("offer has no akash section")
    return akash


def _usd_per_unit(denom: str, akash: dict) -> float:
    """USD per whole coin of the order's denom (the bid is in its micro unit)."""
    if denom == "uact":  # ACT is pegged to the US dollar
        return 1.0
    if denom == "uakt":
        akt_usd = float(akash.get("akt_usd") or 0.0)
        if akt_usd <= 0:
            raise Decline("denom uakt needs an AKT price in the offer (markets.akash.akt_usd)")
        return akt_usd
    raise Decline(f"denom {denom!r} is not supported (uact, uakt)")


def _resource_usd_per_hour(group: dict, akash: dict, i: int) -> tuple[float, int]:
    """One resource group: USD per hour for all `count` replicas, and the GPUs they take."""
    count = _whole(group.get("count", 1), f"resources[{i}].count")
    gpu = group.get("gpu") or {}
    units = _whole(gpu.get("units", 0), f"resources[{i}].gpu.units")
    usd = 0.0
    if units:
        usd += units * _gpu_floor(gpu.get("attributes") or {}, akash)
    usd += _whole(group.get("cpu", 0), f"resources[{i}].cpu") / 1000.0 * float(
        akash.get("cpu_usd_per_core_hour", 0.0))
    usd += _whole(group.get("memory", 0), f"resources[{i}].memory") / GIB * float(
        akash.get("memory_usd_per_gib_hour", 0.0))
    storage_prices = akash.get("storage_usd_per_gib_month") or {}
    for j, vol in enumerate(group.get("storage") or []):
        size = _whole(vol.get("size", 0), f"resources[{i}].storage[{j}].size")
        cls = str(vol.get("class") or vol.get("name") or "ephemeral")
        if cls == "default":
            cls = "ephemeral"
        if size and cls not in storage_prices:
            raise Decline(f"storage class {cls!r} is not offered")
        usd += size / GIB * float(storage_prices.get(cls, 0.0)) / HOURS_PER_MONTH
    usd += _whole(group.get("endpoint_quantity", 0), f"resources[{i}].endpoint_quantity") * float(
        akash.get("endpoint_usd_per_month", 0.0)) / HOURS_PER_MONTH
    usd += _whole(group.get("ip_lease_quantity", 0), f"resources[{i}].ip_lease_quantity") * float(
        akash.get("ip_usd_per_month", 0.0)) / HOURS_PER_MONTH
    return usd * count, units * count


def _gpu_floor(attributes: dict, akash: dict) -> float:
    floors = akash.get("floor_usd_per_gpu_hour") or {}
    vendor = attributes.get("vendor") or {}
    if vendor and "nvidia" not in vendor:
        raise Decline(f"GPU vendor {', '.join(vendor)} is not offered")
    model = str(((vendor.get("nvidia") or {}).get("model")) or WILDCARD).lower()
    if model == WILDCARD:  # any GPU will do: it gets ours, at the wildcard price
        if WILDCARD in floors:
            return float(floors[WILDCARD])
        if not floors:
            raise Decline("the offer prices no GPU")
        return max(float(v) for v in floors.values())
    if model not in floors:
        raise Decline(f"GPU model {model!r} is not on this rig")
    return float(floors[model])


def _whole(value: object, name: str) -> int:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise Decline(f"{name} is not a number: {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise Decline(f"{name} must be a non-negative number, got {value!r}")
    return int(number)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = os.environ.get("SUNRIG_AKASH_OFFER", DEFAULT_OFFER)
    if "--offer" in args:
        at = args.index("--offer")
        if at + 1 >= len(args):
            print("decline: --offer needs a file", file=sys.stderr)
            return 2
        path = args[at + 1]
    try:
        order = json.loads(sys.stdin.read())
        if not isinstance(order, dict):
            raise Decline("the order on stdin is not a JSON object")
        try:
            with open(path, encoding="utf-8") as fh:
                offer = json.load(fh)
        except FileNotFoundError:
            raise Decline(f"no offer at {path}: is the sunrig agent running?") from None
        except (OSError, ValueError) as exc:
            raise Decline(f"offer {path} is unreadable: {exc}") from None
        print(price_order(order, offer, datetime.now(UTC), os.environ.get("AKASH_DENOM")))
        return 0
    except json.JSONDecodeError as exc:
        print(f"decline: the order on stdin is not JSON: {exc}", file=sys.stderr)
    except Decline as exc:
        owner = os.environ.get("AKASH_OWNER", "?")
        print(f"decline ({owner}): {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
