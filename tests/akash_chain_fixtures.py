"""The Akash chain's REST answers for this provider's leases, and a local node that serves them.

Shapes are written from the protos in akash-network/chain-sdk at
55f1c6837f99b17f103c4e8701f24305bd1eef9a:
  proto/node/akash/market/v1beta5/query.proto       QueryLeasesResponse {leases, pagination},
                                                    QueryLeaseResponse {lease, escrow_payment}
  proto/node/akash/market/v1/lease.proto            Lease {id, state, price, created_at,
                                                    closed_on, reason, reclamation}, LeaseID
  proto/node/akash/escrow/types/v1/payment.proto    Payment {id {aid, xid}, state {owner, state,
                                                    rate, balance, unsettled, withdrawn}}
  proto/node/akash/deployment/v1beta4/query.proto   QueryGroupResponse {group}
  proto/node/akash/deployment/v1beta4/group.proto   Group {id, state, group_spec, created_at}
  proto/node/akash/deployment/v1beta4/resourceunit.proto  ResourceUnit {resource, count, price}
  proto/node/akash/base/resources/v1beta4/*.proto   Resources {id, cpu, memory, storage, gpu,
                                                    endpoints}
as the REST gateway renders them: proto snake_case names (group_spec, not the jsontag spec),
defaults emitted ("closed_on": "0", "reclamation": null, "attributes": []), int64/uint64 as
strings, uint32 as numbers, enums by name, DecCoin amounts with 18 decimals, Coin amounts as
integer strings, bytes (pagination.next_key) as base64 and a nil next_key as null.

The node's behaviour is from akash-network/node at 3efe26bf39115a6babf329e8170cd1133cc7dbe9,
x/market/keeper/grpc_query.go Leases: no filters.state means every state; filters.owner, else
filters.provider picks the index walked, in primary-key order; with pagination.key every filter
is ignored (the key carries them); next_key is set only when a further lease matches; total is
the number of leases on this page; a bad state is InvalidArgument; offset without a state is
InvalidArgument. x/deployment/keeper/grpc_query.go Group: NotFound when the group is missing.
The payment id is LeaseID.ToEscrowPaymentID (chain-sdk go/node/market/v1/escrow.go):
aid {deployment, "<owner>/<dseq>"}, xid "<gseq>/<oseq>/<provider>".
Values (addresses, heights, prices) are made up; the addresses are valid bech32.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from urllib.parse import parse_qs, urlsplit

from tests.http_stub import JsonHandler, serve

PROVIDER = "akash14mj2ujawqsjprvtaawg26wvsm2yh0sq5r807yh"
TENANT_A = "akash1szns0tmacalwzg50jyn3sreevjp4ukltnxfx09"
TENANT_B = "akash1ma4k5herp6j44an0hsfcv5l4pyrxwnrzvlgh89"
GIB = 2**30
BLOCK_S = 6.117
LATEST_HEIGHT = 26_200_000
LATEST_TIME = "2026-11-20T12:00:00.123456789Z"
AKT_USD = 2.5
STATES = ("active", "insufficient_funds", "closed", "reclaiming")  # market v1 Lease.State
DEFAULT_LIMIT = 100  # cosmos-sdk types/query DefaultLimit


def dec(amount: str) -> str:
    """A DecCoin amount as the gateway writes it: 18 decimals."""
    whole, _, frac = amount.partition(".")
    return f"{whole}.{frac.ljust(18, '0')}"


def coin(denom: str, amount: str) -> dict:
    return {"denom": denom, "amount": amount}


def lease_record(owner: str, dseq: int, gseq: int, price: dict, *, state: str = "active",
                 created: int, closed: int = 0, reason: str = "lease_closed_invalid",
                 withdrawn: str = "0", balance: str = "0", unsettled: str = "0",
                 payment_state: str = "open") -> dict:
    """One QueryLeaseResponse of leases/list: the lease and its escrow payment."""
    denom = price["denom"]
    return {
        "lease": {
            "id": {"owner": owner, "dseq": str(dseq), "gseq": gseq, "oseq": 1,
                   "provider": PROVIDER, "bseq": 0},
            "state": state, "price": price, "created_at": str(created),
            "closed_on": str(closed), "reason": reason, "reclamation": None},
        "escrow_payment": {
            "id": {"aid": {"scope": "deployment", "xid": f"{owner}/{dseq}"},
                   "xid": f"{gseq}/1/{PROVIDER}"},
            "state": {"owner": PROVIDER, "state": payment_state, "rate": price,
                      "balance": coin(denom, dec(balance)),
                      "unsettled": coin(denom, dec(unsettled)),
                      "withdrawn": coin(denom, withdrawn)}}}


def resource_unit(uid: int, gpus: int, count: int, price: dict, cpu_milli: int = 16000,
                  memory_gib: int = 128, shm_gib: int = 0) -> dict:
    """One ResourceUnit: `count` replicas of a resource with `gpus` GPUs each."""
    storage = [{"name": "default", "quantity": {"val": str(500 * GIB)}, "attributes": []}]
    if shm_gib:
        storage.append({"name": "shm", "quantity": {"val": str(shm_gib * GIB)},
                        "attributes": [{"key": "class", "value": "ram"},
                                       {"key": "persistent", "value": "false"}]})
    gpu_attrs = [{"key": "vendor/nvidia/model/h200/ram/141Gi/interface/sxm", "value": "true"}]
    return {"resource": {
        "id": uid,
        "cpu": {"units": {"val": str(cpu_milli)}, "attributes": []},
        "memory": {"quantity": {"val": str(memory_gib * GIB)}, "attributes": []},
        "storage": storage,
        "gpu": {"units": {"val": str(gpus)}, "attributes": gpu_attrs if gpus else []},
        "endpoints": [{"kind": "SHARED_HTTP", "sequence_number": 0}]},
        "count": count, "price": price}


def group_answer(owner: str, dseq: int, gseq: int, units: list[dict], *, name: str = "akash",
                 state: str = "open", created: int = 0) -> dict:
    """A QueryGroupResponse of groups/info."""
    return {"group": {
        "id": {"owner": owner, "dseq": str(dseq), "gseq": gseq},
        "state": state,
        "group_spec": {"name": name,
                       "requirements": {"signed_by": {"all_of": [], "any_of": []},
                                        "attributes": [{"key": "host", "value": "akash"}]},
                       "resources": units},
        "created_at": str(created)}}


def latest_block(height: int = LATEST_HEIGHT, time: str = LATEST_TIME) -> dict:
    """cosmos.base.tendermint.v1beta1 GetLatestBlockResponse, the parts that matter."""
    return {"block_id": {"hash": "3q2+7w==", "part_set_header": {"total": 1, "hash": "AA=="}},
            "block": {"header": {"chain_id": "akashnet-2", "height": str(height),
                                 "time": time}}}


def usd_per_block_uact(usd_per_hour: float) -> str:
    """The uact per block a tenant pays for `usd_per_hour` (1 ACT = 1 USD)."""
    return dec(f"{usd_per_hour * BLOCK_S / 3600 * 1e6:.12f}")


def _world() -> tuple[list[dict], dict[tuple[str, int, int], dict], dict[str, dict]]:
    """This provider's leases, their groups, and per lease id (owner/dseq/gseq/oseq) what a
    correct reading gives: GPUs, USD per GPU-hour, state and USD earned (withdrawn plus
    balance)."""
    leases, groups, expected = [], {}, {}

    def add(owner, dseq, gseq, record, units, expect, **group):
        leases.append(record)
        groups[(owner, dseq, gseq)] = group_answer(owner, dseq, gseq, units, **group)
        expected[f"{owner}/{dseq}/{gseq}/1"] = expect

    # a two-group deployment: group 1 trains on 2 replicas of 2 GPUs beside a CPU-only sidecar,
    # group 2 serves on 1 GPU; both paid in uact
    a1 = coin("uact", usd_per_block_uact(4 * 2.50))
    add(TENANT_A, 26104512, 1, lease_record(
        TENANT_A, 26104512, 1, a1, created=26190000, withdrawn="150000000",
        balance="2548750"), [
        resource_unit(1, 2, 2, coin("uact", dec("5000")), cpu_milli=32000, memory_gib=256,
                      shm_gib=64),
        resource_unit(2, 0, 1, coin("uact", dec("100")), cpu_milli=1000, memory_gib=1)],
        {"gpus": 4, "usd_per_gpu_hour": 2.50, "state": "active", "earned": 152.54875},
        name="train", created=26104512)
    a2 = coin("uact", usd_per_block_uact(2.20))
    add(TENANT_A, 26104512, 2, lease_record(
        TENANT_A, 26104512, 2, a2, created=26190010, withdrawn="30000000", balance="1000000"),
        [resource_unit(1, 1, 1, coin("uact", dec("5000")))],
        {"gpus": 1, "usd_per_gpu_hour": 2.20, "state": "active", "earned": 31.0},
        name="serve", created=26104512)
    # closed by its owner after 59803 blocks at 7136.5 uact a block: all withdrawn but the
    # fraction a Coin cannot hold
    add(TENANT_B, 21650220, 1, lease_record(
        TENANT_B, 21650220, 1, coin("uact", dec("7136.5")), state="closed", created=21650241,
        closed=21710044, reason="lease_closed_owner", withdrawn="426784059", balance="0.5",
        payment_state="closed"), [resource_unit(1, 2, 1, coin("uact", dec("8000")))],
        {"gpus": 2, "usd_per_gpu_hour": 7136.5e-6 * 3600 / BLOCK_S / 2, "state": "closed",
         "earned": 426.7840595}, state="closed", created=21650220)
    # paid in uakt (AKT_USD a token)
    add(TENANT_B, 21877003, 1, lease_record(
        TENANT_B, 21877003, 1, coin("uakt", dec("1234.5678")), created=21877015,
        withdrawn="4000000", balance="400000"),
        [resource_unit(1, 1, 1, coin("uakt", dec("2000")))],
        {"gpus": 1, "usd_per_gpu_hour": 1234.5678e-6 * AKT_USD * 3600 / BLOCK_S,
         "state": "active", "earned": 4.4 * AKT_USD}, created=21877003)
    # its deployment ran dry: 3 replicas of 1 GPU, closed as insufficient_funds; what the
    # account still owes (unsettled) is not earned
    add(TENANT_B, 25000001, 1, lease_record(
        TENANT_B, 25000001, 1, coin("uact", usd_per_block_uact(3 * 2.0)),
        state="insufficient_funds", created=25000020, closed=25100020,
        reason="lease_closed_reason_insufficient_funds", withdrawn="12000000",
        unsettled="5000", payment_state="overdrawn"),
        [resource_unit(1, 1, 3, coin("uact", dec("4000")))],
        {"gpus": 3, "usd_per_gpu_hour": 2.0, "state": "closed", "earned": 12.0},
        state="insufficient_funds", created=25000001)
    # CPU only: earns, holds no GPU
    add(TENANT_B, 25500000, 1, lease_record(
        TENANT_B, 25500000, 1, coin("uact", dec("500")), created=25500010, withdrawn="1000000",
        balance="0.5"), [resource_unit(1, 0, 1, coin("uact", dec("900")))],
        {"gpus": 0, "usd_per_gpu_hour": 0.0, "state": "active", "earned": 1.0000005},
        created=25500000)
    return leases, groups, expected


EXPECTED = _world()[2]


def primary_key(rec: dict) -> tuple:
    """The order the node walks leases in: LeasePrimaryKey (owner, dseq, gseq, oseq, ...)."""
    i = rec["lease"]["id"]
    return i["owner"], int(i["dseq"]), i["gseq"], i["oseq"], i["provider"], i["bseq"]


class ChainNode:
    """A chain REST endpoint on 127.0.0.1 serving leases/list, groups/info and blocks/latest
    as the node does. Tests change `leases`, `groups` and `latest` (fresh copies of the world)
    freely, a group as bytes is served as that body; `answer[path] = (status, bytes or doc)`
    serves anything on a route; `requests` logs every call as (path, query)."""

    def __init__(self):
        self.leases, self.groups, _ = _world()
        self.leases.sort(key=primary_key)  # the order the node walks its index in
        # what the node filters on: its own index, so a record a test breaks (as a gateway
        # could render it) is still served where the lease is
        self.indexed = [copy.deepcopy(r["lease"]) for r in self.leases]
        self.latest = latest_block()
        self.answer: dict[str, tuple[int, bytes | dict]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        node = self

        class Handler(JsonHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with node.lock:
                    node.requests.append((url.path, query))
                    status, doc = node.answer.get(url.path) or node.route(url.path, query)
                if isinstance(doc, bytes):
                    self.send_body(status, doc)
                else:
                    self.send_json(status, doc)

        self.httpd, self.url = serve(Handler)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def route(self, path: str, q: dict[str, str]) -> tuple[int, dict | bytes]:
        if path == "/akash/market/v1beta5/leases/list":
            return self.leases_list(q)
        if path == "/akash/deployment/v1beta4/groups/info":
            key = (q.get("id.owner", ""), int(q.get("id.dseq", "0") or 0),
                   int(q.get("id.gseq", "0") or 0))
            if key in self.groups:
                return 200, copy.deepcopy(self.groups[key])  # bytes: served as they are
            return 404, grpc_error(5, f"Group not found: {key[0]}/{key[1]}/{key[2]}")
        if path == "/cosmos/base/tendermint/v1beta1/blocks/latest":
            return 200, copy.deepcopy(self.latest)
        return 404, grpc_error(5, "Not Found")

    def leases_list(self, q: dict[str, str]) -> tuple[int, dict]:
        key = q.get("pagination.key")
        if key:  # resume: the key carries the filters and where to go on
            try:
                resume = json.loads(base64.b64decode(key, validate=True))
                filters, start = resume["filters"], int(resume["at"])
            except (ValueError, KeyError, TypeError):
                return 400, grpc_error(3, "invalid pagination key")
        else:
            filters = {k.removeprefix("filters."): v for k, v in q.items()
                       if k.startswith("filters.") and v}
            if filters.get("state") and filters["state"] not in STATES:
                return 400, grpc_error(3, "invalid state value")
            if int(q.get("pagination.offset", "0") or 0) > 0 and not filters.get("state"):
                return 400, grpc_error(3, "invalid request parameters. if offset is set, "
                                          "filter.state must be provided")
            start = 0
        limit = int(q.get("pagination.limit", "0") or 0) or DEFAULT_LIMIT
        matching = [r for r, lease in zip(self.leases, self.indexed, strict=True)
                    if accepts(filters, lease)]
        page = matching[start:start + limit]
        more = len(matching) > start + limit
        next_key = base64.b64encode(json.dumps(
            {"filters": filters, "at": start + limit}).encode()).decode() if more else None
        return 200, {"leases": copy.deepcopy(page),
                     "pagination": {"next_key": next_key, "total": str(len(page))}}


def accepts(filters: dict[str, str], lease: dict) -> bool:
    """market v1 LeaseFilters.Accept: every filter given must match."""
    lid = lease["id"]
    fields = {"owner": lid["owner"], "dseq": lid["dseq"], "gseq": str(lid["gseq"]),
              "oseq": str(lid["oseq"]), "provider": lid["provider"], "bseq": str(lid["bseq"]),
              "state": lease["state"]}
    return all(fields.get(k) == v for k, v in filters.items() if k in fields)


def grpc_error(code: int, message: str) -> dict:
    """The gateway's error body (google.rpc.Status)."""
    return {"code": code, "message": message, "details": []}
