"""Hyperbolic: the supplier side, read with the owner's API key.

The rig supplies GPUs through HyperdOS on microk8s; renters pick nodes in Hyperbolic's
marketplace. The supplier sets its node's price in Hyperbolic's web dashboard, up to a cap per
GPU model (docs.hyperbolic.xyz/docs/gpu-marketplace-pricing); no public API sets a price or takes
GPUs off the market. sunrig therefore steers availability on the rig's Kubernetes (GPUs it holds
as pods are GPUs HyperdOS cannot rent out, node/cluster/kube.py) and reads the rig's own listed
price back, as the price its rentals pay. Hyperbolic's share of the plan is kept the same way,
and only so: what the hold pods leave free is all it can rent (node/cluster/kube.py
gpus_off_market).

Rentals appear here as reserved GPUs per node. A rise in a node's reserved GPUs starts a lease at
the node's listed price, a fall ends the oldest leases first, and a node no longer supplied has
no rentals; the leases are kept in a small state file so a restart neither loses nor repeats
one. Hyperbolic keeps a platform fee of the rental income, so every price sunrig books or plans
with is the listed price net of that fee. What a lease has earned is that net price times its
GPU-hours so far: supplier payouts are not in any public API, so this is an estimate until the
payout statement.

No public source shows the body of `GET /v1/marketplace/instances/supplied`: HyperdOS's
install.bash only checks its status code. It is read as the public listing is documented
(`POST /v1/marketplace`: docs.hyperbolic.xyz/docs/marketplace-api, and hyperbolic-cli's
cmd/spot.go MarketplaceResponse): `{"instances": [{"id", "gpus_total", "gpus_reserved",
"pricing": {"price": {"amount", "period"}}, "hardware": {"gpus": [{"model"}]}}]}`, with
`amount` in US cents per GPU-hour, as every client reads it (the docs say USD; the CLI, the
agent kits and the MCP server all divide by 100). Anything else is an UnknownReply: the market
is degraded, which the agent treats as down, until a reply it knows comes back.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

from energy.files import (
    FileProblem,
    load_state,
    number_field,
    shown,
    text_field,
    time_field,
    whole_field,
)
from energy.redact import http_failure, register
from market_adapter.base import ACTIVE, CLOSED, Capacity, Lease, MarketError, Payout
from market_adapter.files import write_json_atomic

log = logging.getLogger(__name__)

API_URL = "https://api.hyperbolic.xyz"
# "Hyperbolic will take a 10% platform fee from the rental income" (docs.hyperbolic.xyz/docs/
# gpu-marketplace-pricing, Supply Side: an H100 listed at $2.50/h pays its supplier $2.25/h)
PLATFORM_FEE_PCT = 10.0
# what a lease read back from the state file may plausibly hold; beyond is a corrupt file
MAX_GPUS = 1_000
MAX_USD_PER_GPU_HOUR = 1e6
MAX_ID_PREFIX_CHARS = 40
# a listed price beyond $100 per GPU-hour is thirty times the highest published supplier cap
# ($3.20, H100 SXM): an amount there, or a fraction of a cent, means the unit is not cents
MAX_CENTS_PER_GPU_HOUR = 10_000
MAX_NODE_ID_CHARS = 200
OK, DEGRADED = "ok", "degraded"


class UnknownReply(MarketError):
    """Hyperbolic answered in a shape sunrig does not know: nothing of it is booked, and the
    market is degraded (offered nothing new) until a known shape comes back."""


@dataclass(frozen=True)
class SuppliedNode:
    node_id: str
    gpus_reserved: int
    listed_usd_per_gpu_hour: float | None  # None: the reply has no price for it
    model: str


class HyperbolicClient:
    def __init__(self, api_key: str, base_url: str = API_URL, timeout_s: float = 10.0,
                 session: requests.Session | None = None, name: str = "hyperbolic"):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        register(api_key)  # a failing answer may echo the header back
        self.name = name

    def supplied_nodes(self) -> list[dict]:
        doc = self._call("GET", "/v1/marketplace/instances/supplied")
        return _instances(doc, self.name, "instances/supplied")

    def listed_nodes(self) -> list[dict]:
        # the public listing needs no key (the docs; hyperbolic-cli sends none): none is sent
        doc = self._call("POST", "/v1/marketplace", {"filters": {}}, with_key=False)
        return _instances(doc, self.name, "marketplace")

    def reference_prices(self) -> dict[str, float]:
        """Listed USD per GPU-hour by GPU model: the median over the nodes ready to rent."""
        by_model: dict[str, list[float]] = {}
        for node in self.listed_nodes():
            # the docs: only a node whose status is node_ready can be rented
            if not isinstance(node, dict) or node.get("status") != "node_ready":
                continue
            try:
                price = node_price_usd(node)
            except ValueError:  # another supplier's odd entry does not stop the median
                continue
            model = node_model(node)
            if price is not None and model:
                by_model.setdefault(model, []).append(price)
        return {m: statistics.median(p) for m, p in by_model.items()}

    def _call(self, method: str, path: str, body: dict | None = None,
              with_key: bool = True) -> object:
        headers = None if with_key else {"Authorization": None}  # None drops the session's
        try:
            r = self.session.request(method, self.base_url + path, json=body, headers=headers,
                                     timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise MarketError(f"{self.name}: {method} {path} failed: {http_failure(exc)}"
                              ) from None
        if r.status_code in (401, 403):
            raise MarketError(f"{self.name}: {method} {path}: the API key was refused "
                              f"(HTTP {r.status_code})")
        if r.status_code != 200:
            raise MarketError(f"{self.name}: {method} {path} answered HTTP {r.status_code}: "
                              f"{r.text[:200]}")
        try:
            return r.json()
        except ValueError:
            raise MarketError(f"{self.name}: {method} {path} answered something not JSON"
                              ) from None


def _instances(doc: object, name: str, what: str) -> list[dict]:
    """The `instances` of a reply; only the documented object holding that list is known."""
    items = doc.get("instances") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise UnknownReply(f"{name}: {what} answered {_kind(doc)}, not an object with a list "
                           "of instances")
    return items


def _kind(value: object) -> str:
    """What a value is, never what it says: a reply may echo the request, key and all."""
    return "null" if value is None else f"a {type(value).__name__}"


def _whole(value: object) -> int | None:
    """A whole number as JSON gives it: 3, or 3.0 from a service that writes floats; never
    true, '3' or 3.5."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def node_price_usd(node: dict) -> float | None:
    """The listed price per GPU-hour in USD, from whole cents; None where the node has no
    `pricing`. A price in another shape or unit is a ValueError."""
    pricing = node.get("pricing")
    if pricing is None:
        return None
    price = pricing.get("price") if isinstance(pricing, dict) else None
    if not isinstance(price, dict):
        raise ValueError(f"pricing is {_kind(pricing)} without a price object")
    if price.get("period", "hourly") != "hourly":  # the only period any source shows
        raise ValueError(f"the price period is {_kind(price.get('period'))} other than hourly")
    cents = _whole(price.get("amount"))
    if cents is None or not 0 < cents <= MAX_CENTS_PER_GPU_HOUR:
        raise ValueError(f"the price amount is {_kind(price.get('amount'))} that is not whole "
                         f"cents from 1 to {MAX_CENTS_PER_GPU_HOUR} per GPU-hour")
    return cents / 100.0


def gpu_model_key(name: str) -> str:
    """How sunrig names a GPU model, from NVML's name or a market's: 'NVIDIA H100 80GB HBM3'
    and 'NVIDIA-H100-80G-HBM3' -> 'h100', 'NVIDIA A100-SXM4-80GB' -> 'a100', 'NVIDIA GeForce
    RTX 4090' and 'NVIDIA-GeForce-RTX-4090' -> 'rtx4090' (as Akash names it), never 'geforce'
    for every consumer card."""
    words = [w for w in name.lower().replace("-", " ").replace("_", " ").split()
             if w not in ("nvidia", "geforce", "tesla")]
    if len(words) > 1 and words[0] in ("rtx", "gtx"):
        return words[0] + words[1]
    return words[0] if words else ""


def node_model(node: dict) -> str:
    """The model key of a node's first GPU, '' where the node names none."""
    hardware = node.get("hardware")
    gpus = hardware.get("gpus") if isinstance(hardware, dict) else None
    first = gpus[0] if isinstance(gpus, list) and gpus else None
    model = first.get("model") if isinstance(first, dict) else None
    return gpu_model_key(model) if isinstance(model, str) else ""


def parse_supplied(items: list) -> list[SuppliedNode]:
    """The supplied instances, each checked; any that is not as the listing shape has it is a
    ValueError naming what, so that no half-understood reply moves a lease."""
    nodes: dict[str, SuppliedNode] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"instance {i} is {_kind(item)}, not an object")
        node_id = item.get("id")
        if not isinstance(node_id, str) or not 0 < len(node_id) <= MAX_NODE_ID_CHARS or any(
                unicodedata.category(c) in ("Cc", "Cs") for c in node_id):
            raise ValueError(f"instance {i} has no id as a text of 1 to {MAX_NODE_ID_CHARS} "
                             "printable characters")
        if node_id in nodes:
            raise ValueError(f"node {shown(node_id)} is listed twice")
        nodes[node_id] = _supplied_node(node_id, item)
    return list(nodes.values())


def _supplied_node(node_id: str, item: dict) -> SuppliedNode:
    reserved = _whole(item.get("gpus_reserved"))
    if reserved is None or not 0 <= reserved <= MAX_GPUS:
        raise ValueError(f"node {shown(node_id)}: gpus_reserved is "
                         f"{_kind(item.get('gpus_reserved'))}, not a whole number of GPUs")
    if "gpus_total" in item:
        total = _whole(item["gpus_total"])
        if total is None or not reserved <= total <= MAX_GPUS:
            raise ValueError(f"node {shown(node_id)}: gpus_total is not a whole number of "
                             f"GPUs of at least gpus_reserved ({reserved})")
    try:
        price = node_price_usd(item)
    except ValueError as exc:
        raise ValueError(f"node {shown(node_id)}: {exc}") from None
    return SuppliedNode(node_id, reserved, price, node_model(item))


class HyperbolicMarket:
    """The Market interface over the supplier API; leases kept in `state_path`. Every price it
    hands out (leases, payouts, reference prices) is net of the platform fee."""

    def __init__(self, client: HyperbolicClient, state_path: str | Path,
                 now: Callable[[], datetime], currency_rate: float = 1.0,
                 name: str = "hyperbolic", platform_fee_pct: float = PLATFORM_FEE_PCT):
        if not 0 <= platform_fee_pct < 100:
            raise ValueError(f"platform_fee_pct {platform_fee_pct!r} is not from 0 to below 100")
        self.name, self.client = name, client
        self.currency_rate = currency_rate  # site currency per US dollar
        self.net_share = 1.0 - platform_fee_pct / 100.0
        self._now = now
        self._state_path = Path(state_path)
        self._lock = threading.Lock()
        self._id_prefix = ""  # set when a corrupt state file was set aside
        self._leases: dict[str, dict] = self._load()
        self.floor_usd_per_gpu_hour: float | None = None
        self.reference_usd_per_gpu_hour: dict[str, float] = {}  # by model, net of the fee
        self._own_usd_per_gpu_hour: dict[str, float] = {}  # this rig's listed prices, by model
        self._prices_read: datetime | None = None
        self.status, self.degraded_why = OK, ""

    def reference_prices(self, every_s: float = 3600.0) -> dict[str, float]:
        """USD per GPU-hour by model, net of the fee, that a rental of this rig pays: the rig's
        own listed price where the last read showed one (the supplier sets it), else the
        marketplace's median, read at most hourly."""
        if self._own_usd_per_gpu_hour:
            return {m: p * self.net_share for m, p in self._own_usd_per_gpu_hour.items()}
        now = self._now()
        if self._prices_read is None or (now - self._prices_read).total_seconds() >= every_s:
            listed = self.client.reference_prices()
            self.reference_usd_per_gpu_hour = {m: p * self.net_share for m, p in listed.items()}
            self._prices_read = now
        return self.reference_usd_per_gpu_hour

    def offer(self, capacity: Capacity, floor_per_gpu_hour: float) -> None:
        # the owner sets the listed price in Hyperbolic's dashboard and no public API takes GPUs
        # off the market: remember the floor, so the agent can hold GPUs back on Kubernetes when
        # the listed price is below it
        self.floor_usd_per_gpu_hour = floor_per_gpu_hour

    def leases(self) -> list[Lease]:
        try:
            nodes = self._supplied()
        except UnknownReply as exc:
            self._degrade(str(exc))
            raise
        now = self._now()
        with self._lock:
            try:
                self._follow_all(nodes, now)
            except UnknownReply as exc:
                self._degrade(str(exc))
                raise
            self._save()
            self._recover()
            return [self._lease(rec) for rec in self._leases.values()]

    def _supplied(self) -> list[SuppliedNode]:
        try:
            return parse_supplied(self.client.supplied_nodes())
        except ValueError as exc:
            raise UnknownReply(f"{self.name}: instances/supplied: {exc}") from None

    def _degrade(self, why: str) -> None:
        """Mark the market degraded, with one log line when it becomes so."""
        if self.status != DEGRADED:
            log.warning("%s: degraded, offered nothing new until a known reply comes back: %s",
                        self.name, why)
        self.status, self.degraded_why = DEGRADED, why

    def _recover(self) -> None:
        if self.status == DEGRADED:
            log.info("%s: the supplier API answers in a known shape again", self.name)
        self.status, self.degraded_why = OK, ""

    def payouts(self, since: datetime | None) -> list[Payout]:
        now = self._now()
        with self._lock:
            out = []
            for lease_id, rec in self._leases.items():
                end = datetime.fromisoformat(rec["end"]) if rec["end"] else now
                hours = max(0.0, (end - datetime.fromisoformat(rec["start"])).total_seconds()
                            / 3600.0)
                earned = round(rec["gpus"] * rec["price"] * hours, 6)
                out.append(Payout(self.name, f"{lease_id}@{earned:.6f}", lease_id, now, earned,
                                  cumulative=True))
            return out

    def _follow_all(self, nodes: list[SuppliedNode], now: datetime) -> None:
        """Follow every node's reserved GPUs; checked first, so a node that cannot be followed
        changes no lease. A node no longer supplied has nothing reserved."""
        for node in nodes:
            opening = node.gpus_reserved > self._held(node.node_id)
            if opening and node.listed_usd_per_gpu_hour is None:
                raise UnknownReply(f"{self.name}: node {shown(node.node_id)} has GPUs reserved "
                                   "but no listed price")
        self._own_usd_per_gpu_hour = {n.model: n.listed_usd_per_gpu_hour for n in nodes
                                      if n.model and n.listed_usd_per_gpu_hour is not None}
        supplied = {n.node_id: n for n in nodes}
        gone = {r["node"] for r in self._leases.values() if r["end"] is None} - set(supplied)
        for node_id in sorted(gone):
            self._follow(node_id, 0, None, now)
        for node in nodes:
            self._follow(node.node_id, node.gpus_reserved, node.listed_usd_per_gpu_hour, now)

    def _held(self, node_id: str) -> int:
        return sum(r["gpus"] for r in self._leases.values()
                   if r["node"] == node_id and r["end"] is None)

    def _follow(self, node_id: str, reserved: int, listed_usd: float | None,
                now: datetime) -> None:
        running = sorted((r for r in self._leases.values()
                          if r["node"] == node_id and r["end"] is None),
                         key=lambda r: r["start"])
        held = sum(r["gpus"] for r in running)
        if reserved > held and listed_usd is not None:
            seq = sum(1 for r in self._leases.values() if r["node"] == node_id) + 1
            self._leases[f"{node_id}#{self._id_prefix}{seq}"] = {
                "node": node_id, "gpus": reserved - held,
                "price": round(listed_usd * self.net_share, 6),  # what the rig earns
                "start": now.isoformat(), "end": None}
        for rec in running:  # fewer reserved: the oldest rentals ended
            if held <= reserved:
                break
            rec["end"] = now.isoformat()
            held -= rec["gpus"]

    def _lease(self, rec: dict) -> Lease:
        lease_id = next(k for k, v in self._leases.items() if v is rec)
        return Lease(self.name, lease_id, rec["gpus"], rec["price"],
                     CLOSED if rec["end"] else ACTIVE, datetime.fromisoformat(rec["start"]),
                     datetime.fromisoformat(rec["end"]) if rec["end"] else None)

    def _load(self) -> dict[str, dict]:
        """The leases kept in the state file; a corrupt one is set aside and the market starts
        with none (the leases still rented show up again as new ones at the next read)."""
        existed = os.path.lexists(self._state_path)
        try:
            state = load_state(self._state_path, _parse_state, self.name)
        except FileProblem as exc:  # corrupt, and it cannot be moved aside to start fresh
            raise MarketError(f"{self.name}: state file {exc}") from None
        if state is not None:
            leases, self._id_prefix = state
            return leases
        if existed:  # set aside: its leases are not known, so new ones get ids of their own
            # and a lease's earnings are never weighed against what an old one booked
            self._id_prefix = self._now().strftime("%Y%m%dT%H%M%S.")
        return {}

    def _save(self) -> None:
        write_json_atomic(self._state_path, {"leases": self._leases, "id_prefix": self._id_prefix,
                                             "saved": datetime.now(UTC).isoformat()}, 0o600)


def _parse_state(doc: object) -> tuple[dict[str, dict], str]:
    """The state file's document, every value checked: (leases by id, lease id prefix)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("leases", {}), dict):
        raise ValueError("not an object with an object of leases")
    prefix = doc.get("id_prefix", "")
    if not isinstance(prefix, str) or len(prefix) > MAX_ID_PREFIX_CHARS:
        raise ValueError("id_prefix is not a short text")
    leases: dict[str, dict] = {}
    for lease_id, rec in doc.get("leases", {}).items():
        try:
            leases[lease_id] = _parse_lease(rec)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"lease {shown(lease_id)}: {exc}") from None
    return leases, prefix


def _parse_lease(rec: object) -> dict:
    if not isinstance(rec, dict):
        raise ValueError("not an object")
    # price: what the rig earns per GPU-hour, net of the fee (in files written before the fee
    # was taken off, the listed price, which their leases were booked at and keep)
    lease = {"node": text_field(rec, "node"), "gpus": whole_field(rec, "gpus", 1, MAX_GPUS),
             "price": number_field(rec, "price", 0.0, MAX_USD_PER_GPU_HOUR),
             "start": rec["start"], "end": rec["end"]}
    start = time_field(rec, "start")
    if rec["end"] is not None and time_field(rec, "end") < start:
        raise ValueError("ends before it starts")
    return lease
