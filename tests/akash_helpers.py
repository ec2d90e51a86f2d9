"""A local stand-in for an Akash chain REST endpoint serving recorded-shape answers."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.http_stub import JsonHandler, serve

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


class ChainServer:
    """Serves leases/list (two pages), deployments/info and blocks/latest on 127.0.0.1.
    `fail_next` answers the next requests with that HTTP status; `requests` counts calls."""

    def __init__(self):
        self.fail_next: list[int] = []
        self.requests: list[str] = []
        self.delay_s = 0.0
        owner = self

        class Handler(JsonHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                owner.requests.append(self.path)
                if owner.delay_s:
                    threading.Event().wait(owner.delay_s)
                if owner.fail_next:
                    self.send_json(owner.fail_next.pop(0), {"code": 13, "message": "internal"})
                    return
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/akash/market/v1beta5/leases/list":
                    page = "leases_page2.json" if q.get("pagination.key") else "leases_page1.json"
                    self.send_json(200, json.loads((DATA / page).read_text()))
                elif url.path == "/akash/deployment/v1beta4/deployments/info":
                    self.send_json(200, json.loads((DATA / f"deployment_{q['id.dseq']}.json")
                                               .read_text()))
                elif url.path == "/status":
                    self.send_json(200, json.loads((DATA / "provider_status.json").read_text()))
                elif url.path == "/cosmos/base/tendermint/v1beta1/blocks/latest":
                    self.send_json(200, json.loads((DATA / "latest_block.json").read_text()))
                else:
                    self.send_json(404, {"code": 5, "message": "not found"})



        self.httpd, self.url = serve(Handler)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
