"""Akash Network: the offer the bid endpoint prices from, provider attributes, and leases
and escrow earnings read from the chain's REST API.

sunrig does not bid itself: the Akash provider (provider-services on the rig's Kubernetes) bids,
and its bid-price script asks the agent's bid endpoint (akash_bid_server.py) for every order's
price. sunrig steers it by the offer it renews every minute and by the GPUs it holds for local
inference as pods (node/kube.py). What tenants pay is read
back from the chain: every lease of this provider (all states, page by page) and its escrow
payment, whose withdrawn plus balance is what the lease has earned so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from energy.redact import http_failure
from market_adapter.akash_bid import Offer, parse_offer
from market_adapter.akash_order import FieldError, interface_name
from market_adapter.base import ACTIVE, CLOSED, Capacity, Lease, MarketError, Payout
from market_adapter.files import write_json_atomic

MICRO = 1_000_000
PAGE_LIMIT = 100
MAX_PAGES = 200  # 20,000 leases: beyond that the API is looping, not paging


@dataclass(frozen=True)
class AkashPrices:
    """USD prices of what a GPU order also takes, and how the bid is formed."""

    cpu_usd_per_core_hour: float = 0.0022
    memory_usd_per_gib_hour: float = 0.0011
    storage_usd_per_gib_month: tuple[tuple[str, float], ...] = (
        ("ephemeral", 0.02), ("beta1", 0.01), ("beta2", 0.03), ("beta3", 0.04))
    endpoint_usd_per_month: float = 0.05
    ip_usd_per_month: float = 5.0
    margin_pct: float = 5.0
    block_seconds: float = 6.117
    akt_usd: float = 0.0


def build_offer(capacity: Capacity, floor_usd_per_gpu_hour: float, prices: AkashPrices,
                valid_until: datetime, gpu_interface: str = "", gpu_ram: str = "") -> dict:
    """The offer document the bid endpoint prices from: free GPUs, what they are, their floor,
    and the other prices."""
    floor = round(floor_usd_per_gpu_hour, 6)
    gpu = {}
    if gpu_ram or capacity.memory_gib > 0:
        gpu["gpu_ram"] = gpu_ram_name(capacity.memory_gib, gpu_ram)
    if gpu_interface:
        gpu["gpu_interface"] = interface_name(gpu_interface)
    return {"valid_until": valid_until.astimezone(UTC).isoformat(), "akash": {
        "gpus_available": capacity.gpus, "tee": capacity.tee,
        "floor_usd_per_gpu_hour": {capacity.model: floor, "*": floor}, **gpu,
        "cpu_usd_per_core_hour": prices.cpu_usd_per_core_hour,
        "memory_usd_per_gib_hour": prices.memory_usd_per_gib_hour,
        "storage_usd_per_gib_month": dict(prices.storage_usd_per_gib_month),
        "endpoint_usd_per_month": prices.endpoint_usd_per_month,
        "ip_usd_per_month": prices.ip_usd_per_month, "margin_pct": prices.margin_pct,
        "block_seconds": prices.block_seconds, "akt_usd": prices.akt_usd}}


def write_offer(path: str | Path, offer: dict) -> None:
    """Replace the offer file whole: `sunrig akash price-script` may read it at any moment (it
    holds prices, no secrets, so it is world-readable)."""
    write_json_atomic(path, offer, 0o644)


def gpu_ram_name(memory_gib: float, configured: str = "") -> str:
    """GPU memory as Akash names it: the configured name, else the memory rounded up to whole
    GiB. NVML reports what the driver can use, a little under the marketed size (an H200's
    140.4 GiB is Akash's 141Gi, provider-configs devices/pcie/gpus.json); a GPU whose ECC
    reserve is larger (an L40S's 45 GiB of 48) needs `markets.akash.gpu_ram` set."""
    return configured or f"{math.ceil(round(memory_gib, 1))}Gi"


def provider_attributes(model: str, memory_gib: float, interface: str, tee: bool,
                        region: str = "", gpu_ram: str = "") -> list[tuple[str, str]]:
    """The provider's attributes for this rig, as the chart's `attributes:` list takes them.

    A tenant's GPU requirement is matched key by key (chain-sdk go/node/types/attributes/v1
    attribute.go, its key the pattern): the SDL writes memory before interface
    (`vendor/nvidia/model/h200/ram/141Gi/interface/sxm`, as on mainnet's group specs), Akash's
    provider docs list interface before memory; both orders are advertised, and each part alone.
    `tee/type` only while attestation verifies: `cpu-gpu`, the GPU's confidential computing
    running inside a CPU TEE (chain-sdk go/sdl/tee.go)."""
    m = model.lower()
    ram = gpu_ram_name(memory_gib, gpu_ram)
    iface = interface_name(interface)
    base = f"capabilities/gpu/vendor/nvidia/model/{m}"
    attrs = [("region", region)] if region else []
    attrs += [("capabilities/gpu", "nvidia"), (base, "true"), (f"{base}/ram/{ram}", "true"),
              (f"{base}/interface/{iface}", "true"),
              (f"{base}/ram/{ram}/interface/{iface}", "true"),
              (f"{base}/interface/{iface}/ram/{ram}", "true")]
    if tee:
        attrs.append(("tee/type", "cpu-gpu"))
    return attrs


class AkashChain:
    """This provider's leases and escrow earnings from a chain REST (LCD) endpoint."""

    def __init__(self, rest_url: str, provider: str, block_seconds: float = 6.117,
                 akt_usd: float = 0.0, timeout_s: float = 10.0,
                 session: requests.Session | None = None, name: str = "akash"):
        self.rest_url = rest_url.rstrip("/")
        self.provider = provider
        self.block_seconds = block_seconds
        self.akt_usd = akt_usd
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.name = name
        self._gpus: dict[tuple[str, str, int], int] = {}  # (owner, dseq, gseq): GPUs per lease
        self._latest_block: tuple[int, datetime] | None = None

    def lease_records(self) -> list[dict]:
        """Every lease of this provider, all states, following `pagination.next_key`."""
        out, key = [], None
        for _ in range(MAX_PAGES):
            params = {"filters.provider": self.provider, "pagination.limit": PAGE_LIMIT}
            if key:
                params["pagination.key"] = key
            doc = self._get("/akash/market/v1beta5/leases/list", params)
            page = doc.get("leases")
            if not isinstance(page, list):
                raise MarketError(f"{self.name}: leases/list answered without a leases list")
            out.extend(page)
            key = (doc.get("pagination") or {}).get("next_key")
            if not key:
                return out
        raise MarketError(f"{self.name}: leases/list still paging after {MAX_PAGES} pages")

    def leases_and_payouts(self, now: datetime) -> tuple[list[Lease], list[Payout]]:
        """Leases, and per lease one cumulative payout: what it has earned so far (USD)."""
        self._latest_block = None  # heights turn into times against this sync's latest block
        leases, payouts = [], []
        for rec in self.lease_records():
            lease, earned = self._parse(rec)
            leases.append(lease)
            payouts.append(Payout(self.name, f"{lease.lease_id}@{earned:.6f}", lease.lease_id,
                                  now, earned, cumulative=True))
        return leases, payouts

    def _parse(self, rec: dict) -> tuple[Lease, float]:
        try:
            lease, pay = rec["lease"], rec.get("escrow_payment") or {}
            lid = lease["lease_id"]
            owner, dseq, gseq, oseq = lid["owner"], str(lid["dseq"]), int(lid["gseq"]), int(
                lid["oseq"])
            state = str(lease["state"])
            price = lease["price"]
            usd_per_hour = self._usd(price) * 3600.0 / self.block_seconds
            created = int(lease["created_at"])
            closed = int(lease.get("closed_on") or 0)
            account = pay.get("state") if isinstance(pay.get("state"), dict) else pay
            earned = sum(self._usd(account[k]) for k in ("withdrawn", "balance") if k in account)
        except (KeyError, TypeError, ValueError) as exc:
            raise MarketError(f"{self.name}: a lease record is malformed ({exc!r})") from None
        gpus = self._gpus_of(owner, dseq, gseq)
        lease_id = f"{owner}/{dseq}/{gseq}/{oseq}"
        started = self._block_time(created)
        ended = self._block_time(closed) if closed and state != "active" else None
        return Lease(self.name, lease_id, gpus, usd_per_hour / max(gpus, 1),
                     ACTIVE if state == "active" else CLOSED, started, ended), earned

    def _gpus_of(self, owner: str, dseq: str, gseq: int) -> int:
        key = (owner, dseq, gseq)
        if key not in self._gpus:
            doc = self._get("/akash/deployment/v1beta4/deployments/info",
                            {"id.owner": owner, "id.dseq": dseq})
            total = 0
            for group in doc.get("groups") or []:
                if int((group.get("group_id") or {}).get("gseq", -1)) != gseq:
                    continue
                for unit in (group.get("group_spec") or {}).get("resources") or []:
                    gpu = (unit.get("resource") or {}).get("gpu") or {}
                    total += int((gpu.get("units") or {}).get("val", 0)) * int(unit.get("count", 1))
            self._gpus[key] = total
        return self._gpus[key]

    def _usd(self, coin: dict) -> float:
        amount = float(coin["amount"])
        denom = coin["denom"]
        if denom == "uact":
            return amount / MICRO
        if denom == "uakt":
            if self.akt_usd <= 0:
                raise MarketError(f"{self.name}: a lease pays in uakt; set markets.akash.akt_usd")
            return amount / MICRO * self.akt_usd
        raise MarketError(f"{self.name}: a lease pays in {denom!r}, not uact or uakt")

    def _block_time(self, height: int) -> datetime:
        """A block height as a time, counted back from the latest block at the block time."""
        latest_height, latest_time = self._latest()
        return latest_time - timedelta(seconds=(latest_height - height) * self.block_seconds)

    def _latest(self) -> tuple[int, datetime]:
        if self._latest_block is None:
            doc = self._get("/cosmos/base/tendermint/v1beta1/blocks/latest", {})
            try:
                header = doc["block"]["header"]
                self._latest_block = (int(header["height"]), chain_time(header["time"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise MarketError(f"{self.name}: latest block is malformed ({exc!r})") from None
        return self._latest_block

    def _get(self, path: str, params: dict) -> dict:
        url = self.rest_url + path
        try:
            r = self.session.get(url, params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise MarketError(f"{self.name}: GET {path} failed: {http_failure(exc)}") from None
        if r.status_code != 200:
            raise MarketError(f"{self.name}: GET {path} answered HTTP {r.status_code}: "
                              f"{r.text[:200]}")
        try:
            doc = r.json()
        except ValueError:
            raise MarketError(f"{self.name}: GET {path} answered something not JSON") from None
        if not isinstance(doc, dict):
            raise MarketError(f"{self.name}: GET {path} answered a JSON {type(doc).__name__}")
        return doc


def chain_time(text: str) -> datetime:
    """Cosmos RFC 3339 times carry nanoseconds; Python takes microseconds."""
    text = text.strip().replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):] or "+00:00"
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class AkashProvider:
    """The provider's own `/status`: is it up, is it this provider, how many leases it runs."""

    def __init__(self, url: str, address: str, ca_file: str | None = None,
                 timeout_s: float = 5.0, session: requests.Session | None = None):
        self.url, self.address = url.rstrip("/"), address
        # provider certificates are self-signed by the provider's on-chain certificate; without
        # its CA the read-only status is read unverified (it carries no secret)
        self.verify: str | bool = ca_file or False
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    def running_leases(self) -> int:
        try:
            r = self.session.get(self.url + "/status", timeout=self.timeout_s, verify=self.verify)
            doc = r.json() if r.status_code == 200 else None
        except requests.RequestException as exc:
            raise MarketError(f"akash provider {self.url}: /status failed: {http_failure(exc)}"
                              ) from None
        except ValueError:
            raise MarketError(f"akash provider {self.url}: /status failed: the answer is not "
                              "JSON") from None
        if not isinstance(doc, dict):
            raise MarketError(f"akash provider {self.url}: /status answered HTTP {r.status_code}")
        if doc.get("address") and doc["address"] != self.address:
            raise MarketError(f"akash provider {self.url} is {doc['address']}, not "
                              f"{self.address}")
        try:
            return int((doc.get("cluster") or {}).get("leases", 0))
        except (TypeError, ValueError):
            raise MarketError(f"akash provider {self.url}: /status cluster.leases is "
                              f"{doc['cluster'].get('leases')!r}") from None


class AkashMarket:
    """The Market interface over Akash: offers go to the bid script's file, leases and earnings
    come from the chain."""

    def __init__(self, chain: AkashChain, offer_path: str | Path, prices: AkashPrices,
                 currency_rate: float, now, valid_s: float = 300.0, name: str = "akash",
                 provider: AkashProvider | None = None, gpu_interface: str = "",
                 gpu_ram: str = ""):
        self.name, self.provider = name, provider
        self.provider_leases: int | None = None
        self.currency_rate = currency_rate  # site currency per US dollar
        self.chain, self.offer_path, self.prices = chain, Path(offer_path), prices
        self._now, self.valid_s = now, valid_s
        self.now = now  # the agent's clock: an offer is stale by its time
        self.gpu_interface, self.gpu_ram = gpu_interface, gpu_ram
        # what the bid endpoint prices from; None until the first offer after a start
        self.current_offer: Offer | None = None
        self._payouts: list[Payout] = []

    def offer(self, capacity: Capacity, floor_per_gpu_hour: float) -> None:
        if capacity.gpus < 0 or floor_per_gpu_hour < 0:
            raise MarketError(f"{self.name}: offer of {capacity.gpus} GPUs at "
                              f"{floor_per_gpu_hour} is not valid")
        until = self._now() + timedelta(seconds=self.valid_s)
        doc = build_offer(capacity, floor_per_gpu_hour, self.prices, until, self.gpu_interface,
                          self.gpu_ram)
        try:  # the one check the endpoint's offer and the file's both pass
            self.current_offer = parse_offer(doc)
        except FieldError as exc:
            raise MarketError(f"{self.name}: the offer is not valid: {exc}") from None
        try:  # for `sunrig akash price-script`, which prices from the file
            write_offer(self.offer_path, doc)
        except OSError as exc:
            raise MarketError(f"{self.name}: cannot write the offer {self.offer_path}: {exc}"
                              ) from None

    def leases(self) -> list[Lease]:
        """Leases from the chain; a provider that is down makes the market down too (tenants
        could not be served), so the planner offers it nothing until it answers again."""
        if self.provider is not None:
            self.provider_leases = self.provider.running_leases()
        leases, self._payouts = self.chain.leases_and_payouts(self._now())
        return leases

    def payouts(self, since: datetime | None) -> list[Payout]:
        return list(self._payouts)
