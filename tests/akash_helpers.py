"""A local stand-in for an Akash chain REST endpoint serving recorded-shape answers."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).parent / "data" / "akash"
GIB = 2**30

# An order exactly as the Akash provider hands it to a bid-price script, from akash-network/
# provider (afc4dd7) bidengine/shellscript.go: newDataForScript fills the structs of
# bidengine/pricing.go (dataForScript, dataForScriptElement, gpuElement, storageElement) and
# CalculatePrice writes them with json.NewEncoder, so stdin is one compact JSON line and a
# newline, keys in struct order. `price` is a cosmos DecCoin whose LegacyDec amount Go writes as
# a string with 18 decimals; price_precision is sent only when positive (6 by default, order.go);
# a GPU's attributes come from keys like vendor/nvidia/model/h200/ram/141Gi/interface/sxm (model
# "*" when the SDL names none); a volume's class is "ephemeral" unless the SDL gives one.


def provider_service(units: int = 1, count: int = 1, model: str = "h200", cpu: int = 8000,
                     memory: int = 64 * GIB, storage: tuple = (("ephemeral", GIB),
                                                                ("beta3", 100 * GIB)),
                     endpoints: int = 1, ip_leases: int = 0) -> dict:
    attributes = {"vendor": {"nvidia": {"model": model, "ram": "141Gi", "interface": "sxm"}}}
    return {"memory": memory, "cpu": cpu,
            "gpu": {"units": units, "attributes": attributes if units else {}},
            "storage": [{"class": cls, "size": size} for cls, size in storage],
            "count": count, "endpoint_quantity": endpoints, "ip_lease_quantity": ip_leases}


def provider_order(*services: dict, denom: str = "uact", amount: str = "100000",
                   precision: int | None = 6) -> dict:
    whole, _, frac = amount.partition(".")
    doc = {"resources": list(services) or [provider_service()],
           "price": {"denom": denom, "amount": f"{whole}.{frac.ljust(18, '0')}"}}
    if precision:
        doc["price_precision"] = precision
    return doc


def provider_stdin(doc: object) -> bytes:
    """What the provider writes on the script's stdin for `doc`."""
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()
