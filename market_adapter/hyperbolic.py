"""Hyperbolic: the supplier side, read with the owner's API key.

The rig supplies GPUs through HyperdOS on microk8s; renters pick nodes in Hyperbolic's
marketplace at the price Hyperbolic lists. The supplier API says which of the rig's nodes are
listed and how many of their GPUs are reserved; it offers no call to set a price or to take GPUs
off the market. sunrig therefore steers availability on the rig's Kubernetes (GPUs it holds as
pods are GPUs HyperdOS cannot rent out, node/kube.py) and uses the marketplace's listed prices as
the market's reference price.

Rentals appear here as reserved GPUs per node. A rise in a node's reserved GPUs starts a lease at
the node's listed price, a fall ends the oldest leases first; the leases are kept in a small state
file so a restart neither loses nor repeats one. What a lease has earned is its price times its
GPU-hours so far: Hyperbolic's supplier payouts are not in the API, so this is an estimate until
the payout statement (prices are in cents per GPU-hour).
"""

from __future__ import annotations

import os
import statistics
import threading
from collections.abc import Callable
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

API_URL = "https://api.hyperbolic.xyz"
# what a lease read back from the state file may plausibly hold; beyond is a corrupt file
MAX_GPUS = 1_000
MAX_USD_PER_GPU_HOUR = 1e6
MAX_ID_PREFIX_CHARS = 40


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
        doc = self._call("POST", "/v1/marketplace", {"filters": {}})
        return _instances(doc, self.name, "marketplace")

    def reference_prices(self) -> dict[str, float]:
        """USD per GPU-hour by GPU model: the median listed price across the marketplace."""
        by_model: dict[str, list[float]] = {}
        for node in self.listed_nodes():
            price = node_price_usd(node)
            model = node_model(node)
            if price is not None and model:
                by_model.setdefault(model, []).append(price)
        return {m: statistics.median(p) for m, p in by_model.items()}

    def _call(self, method: str, path: str, body: dict | None = None) -> object:
        try:
            r = self.session.request(method, self.base_url + path, json=body,
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
    items = doc.get("instances") if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise MarketError(f"{name}: {what} answered without a list of instances")
    return items


def node_price_usd(node: dict) -> float | None:
    """The listed price per GPU-hour in USD (the API gives cents)."""
    try:
        cents = float(node["pricing"]["price"]["amount"])
    except (KeyError, TypeError, ValueError):
        return None
    return cents / 100.0 if cents >= 0 else None


def node_model(node: dict) -> str:
    """'NVIDIA-H100-80G-HBM3' -> 'h100': how sunrig names models."""
    gpus = ((node.get("hardware") or {}).get("gpus") or [{}])
    raw = str((gpus[0] or {}).get("model", "")).lower().replace("nvidia", "").strip("- ")
    return raw.split("-")[0] if raw else ""


class HyperbolicMarket:
    """The Market interface over the supplier API; leases kept in `state_path`."""

    def __init__(self, client: HyperbolicClient, state_path: str | Path,
                 now: Callable[[], datetime], currency_rate: float = 1.0,
                 name: str = "hyperbolic"):
        self.name, self.client = name, client
        self.currency_rate = currency_rate  # site currency per US dollar
        self._now = now
        self._state_path = Path(state_path)
        self._lock = threading.Lock()
        self._id_prefix = ""  # set when a corrupt state file was set aside
        self._leases: dict[str, dict] = self._load()
        self.floor_usd_per_gpu_hour: float | None = None
        self.reference_usd_per_gpu_hour: dict[str, float] = {}  # by model, from the listing
        self._prices_read: datetime | None = None

    def reference_prices(self, every_s: float = 3600.0) -> dict[str, float]:
        """The marketplace's median listed price per model, read at most hourly."""
        now = self._now()
        if self._prices_read is None or (now - self._prices_read).total_seconds() >= every_s:
            self.reference_usd_per_gpu_hour = self.client.reference_prices()
            self._prices_read = now
        return self.reference_usd_per_gpu_hour

    def offer(self, capacity: Capacity, floor_per_gpu_hour: float) -> None:
        # Hyperbolic sets prices and has no availability call: remember the floor, so the
        # agent can hold GPUs back on Kubernetes when the listed price is below it
        self.floor_usd_per_gpu_hour = floor_per_gpu_hour

    def leases(self) -> list[Lease]:
        nodes = self.client.supplied_nodes()
        now = self._now()
        with self._lock:
            for node in nodes:
                self._follow(node, now)
            self._save()
            return [self._lease(rec) for rec in self._leases.values()]

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

    def _follow(self, node: dict, now: datetime) -> None:
        node_id = str(node.get("id") or "")
        if not node_id:
            raise MarketError(f"{self.name}: a supplied instance has no id")
        try:
            reserved = int(node.get("gpus_reserved", 0))
        except (TypeError, ValueError):
            raise MarketError(f"{self.name}: node {node_id} gpus_reserved is "
                              f"{node.get('gpus_reserved')!r}") from None
        running = sorted((r for r in self._leases.values()
                          if r["node"] == node_id and r["end"] is None),
                         key=lambda r: r["start"])
        held = sum(r["gpus"] for r in running)
        if reserved > held:
            price = node_price_usd(node)
            seq = sum(1 for r in self._leases.values() if r["node"] == node_id) + 1
            self._leases[f"{node_id}#{self._id_prefix}{seq}"] = {
                "node": node_id, "gpus": reserved - held, "price": price or 0.0,
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
    lease = {"node": text_field(rec, "node"), "gpus": whole_field(rec, "gpus", 1, MAX_GPUS),
             "price": number_field(rec, "price", 0.0, MAX_USD_PER_GPU_HOUR),
             "start": rec["start"], "end": rec["end"]}
    start = time_field(rec, "start")
    if rec["end"] is not None and time_field(rec, "end") < start:
        raise ValueError("ends before it starts")
    return lease
