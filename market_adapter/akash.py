"""Akash Network: the offer the bid endpoint prices from, provider attributes, and leases
and escrow earnings read from the chain's REST API.

sunrig does not bid itself: the Akash provider (provider-services on the rig's Kubernetes) bids,
and its bid-price script asks the agent's bid endpoint (akash_bid_server.py) for every order's
price. sunrig steers it by the offer it renews every minute and by the GPUs it holds for local
inference as pods (node/cluster/kube.py). What tenants pay is read
back from the chain: every lease of this provider (all states, page by page) and its escrow
payment, whose withdrawn plus balance is what the lease has earned so far.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import requests

from energy.redact import http_failure, redact
from market_adapter.akash_bid import Offer, parse_offer
from market_adapter.akash_order import FieldError, interface_name
from market_adapter.base import ACTIVE, CLOSED, Capacity, Lease, MarketError, Payout
from market_adapter.files import write_json_atomic

log = logging.getLogger(__name__)

MICRO = Decimal(1_000_000)
PAGE_LIMIT = 100
MAX_PAGES = 200  # 20,000 leases: beyond that the API is looping, not paging
MAX_BODY_BYTES = 16 << 20  # a page of 100 leases is about 200 KiB; far more is no answer
UINT32_MAX, INT64_MAX = 2**32 - 1, 2**63 - 1
# a cosmos Coin amount (integer) or DecCoin amount (18 decimals), as the REST gateway writes it
AMOUNT = re.compile(r"[0-9]{1,40}(\.[0-9]{1,18})?", re.ASCII)
LEASES_PATH = "/akash/market/v1beta5/leases/list"
GROUP_PATH = "/akash/deployment/v1beta4/groups/info"
LATEST_BLOCK_PATH = "/cosmos/base/tendermint/v1beta1/blocks/latest"
# market v1 Lease.State as it bears on GPUs: a reclaiming lease still runs until its window
# ends; insufficient_funds is closed like closed (node x/market/keeper OnLeaseClosed sets
# closed_on for both)
LEASE_STATES = {"active": ACTIVE, "reclaiming": ACTIVE, "insufficient_funds": CLOSED,
                "closed": CLOSED}


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
    `tee/type` only while the host's confidential-computing preflight passes (the caller
    decides: node/tee_gate.py): `cpu-gpu`, the GPU's confidential computing running inside a
    CPU TEE (chain-sdk go/sdl/tee.go), which the provider's confidential-compute branch places
    in a Kata GPU RuntimeClass (cluster/kube/builder/workload.go)."""
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


class Unreadable(ValueError):
    """One chain record that cannot be read; the message names the field and what is wrong.
    The record is skipped (and logged once): one odd lease never takes the market down."""


class _BadAnswer(Exception):
    """What the node answered is no JSON object: an HTTP error, not JSON, too large or deep."""


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    names = {str: "a string", int: "a number", float: "a number", list: "a list",
             dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    """A value for a message: short, and only the kind of a container."""
    if isinstance(value, dict | list) or value is None:
        return _kind(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def field_at(doc: object, path: str) -> object:
    """The value at a dotted `path` (a digit step indexes a list), or Unreadable naming the
    first step that is missing or not an object."""
    value, walked = doc, ""
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        elif isinstance(value, dict):
            raise Unreadable(f"{walked + '.' if walked else ''}{step}: is missing")
        else:
            raise Unreadable(f"{walked or 'record'}: is {_kind(value)}, not an object")
        walked = f"{walked}.{step}" if walked else step
    return value


def text_at(doc: object, path: str) -> str:
    """A proto string that names something (address, state, denom): printable, not empty."""
    value = field_at(doc, path)
    if not isinstance(value, str) or not value or len(value) > 256 or not value.isprintable():
        raise Unreadable(f"{path}: is {_show(value)}, not a name")
    return value


def count_at(doc: object, path: str, limit: int = INT64_MAX) -> int:
    """A proto integer as the gateway writes it: uint32 a JSON number, (u)int64 a decimal
    string."""
    value = field_at(doc, path)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise Unreadable(f"{path}: is {_show(value)}, not a whole number")
    if not 0 <= number <= limit:
        raise Unreadable(f"{path}: {number} is outside 0..{limit}")
    return number


def amount_at(doc: object, path: str) -> Decimal:
    """A cosmos Coin (integer) or DecCoin (18 decimals) amount: always a decimal string."""
    value = field_at(doc, path)
    if not isinstance(value, str) or not AMOUNT.fullmatch(value):
        raise Unreadable(f"{path}: is {_show(value)}, not a coin amount (a decimal string)")
    return Decimal(value)


@dataclass(frozen=True)
class LeaseRef:
    """A lease as this provider knows it: market v1 LeaseID less provider and bseq (a
    provider holds at most one lease per order)."""

    owner: str
    dseq: int
    gseq: int
    oseq: int

    @property
    def lease_id(self) -> str:
        return f"{self.owner}/{self.dseq}/{self.gseq}/{self.oseq}"

    @property
    def group(self) -> tuple[str, int, int]:
        return self.owner, self.dseq, self.gseq


def lease_ref(rec: object) -> LeaseRef:
    return LeaseRef(text_at(rec, "lease.id.owner"), count_at(rec, "lease.id.dseq"),
                    count_at(rec, "lease.id.gseq", UINT32_MAX),
                    count_at(rec, "lease.id.oseq", UINT32_MAX))


def group_gpus(doc: object, ref: LeaseRef) -> int:
    """GPUs a group's lease holds: per resource unit, GPUs per replica times `count` (deployment
    v1beta4 ResourceUnit); a unit without GPUs has `gpu` null or units 0."""
    got = (text_at(doc, "group.id.owner"), count_at(doc, "group.id.dseq"),
           count_at(doc, "group.id.gseq", UINT32_MAX))
    if got != ref.group:
        raise Unreadable(f"group.id: is {'/'.join(map(str, got))}, not the lease's group")
    units = field_at(doc, "group.group_spec.resources")
    if not isinstance(units, list):
        raise Unreadable(f"group.group_spec.resources: is {_kind(units)}, not a list")
    total = 0
    for i in range(len(units)):
        unit = f"group.group_spec.resources.{i}"
        gpu = field_at(doc, f"{unit}.resource.gpu")
        per_replica = 0 if gpu is None else count_at(doc, f"{unit}.resource.gpu.units.val",
                                                     UINT32_MAX)
        total += per_replica * count_at(doc, f"{unit}.count", UINT32_MAX)
    return total


def read_capped(r: requests.Response) -> bytes:
    """The body of a streamed answer, refused past MAX_BODY_BYTES rather than held in memory."""
    chunks, size = [], 0
    for chunk in r.iter_content(64 << 10):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BadAnswer(f"answered more than {MAX_BODY_BYTES >> 20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def json_object(body: bytes) -> dict:
    """The body as a JSON object, or _BadAnswer saying what it is instead."""
    try:
        doc = json.loads(body)
    except RecursionError:  # the decoder recurses per level: deep nesting is garbage, not a bug
        raise _BadAnswer("answered JSON nested too deep to read") from None
    except ValueError:
        raise _BadAnswer("answered something that is not JSON") from None
    if not isinstance(doc, dict):
        raise _BadAnswer(f"answered {_kind(doc)}, not a JSON object")
    return doc


def _excerpt(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else "?" for ch in text)


class AkashChain:
    """This provider's leases and escrow earnings from a chain REST (LCD) endpoint: market
    v1beta5 leases/list (each lease with its escrow payment), deployment v1beta4 groups/info
    for a lease's GPUs, and the latest block to turn heights into times."""

    def __init__(self, rest_url: str, provider: str, block_seconds: float = 6.117,
                 akt_usd: float = 0.0, timeout_s: float = 10.0,
                 session: requests.Session | None = None, name: str = "akash",
                 page_limit: int = PAGE_LIMIT):
        self.rest_url = rest_url.rstrip("/")
        self.provider = provider
        self.block_seconds = block_seconds
        self.akt_usd = akt_usd
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.name = name
        self.page_limit = page_limit
        # GPUs per group (owner, dseq, gseq): a group's spec never changes once created (node
        # x/deployment/handler/server.go UpdateDeployment changes only the hash)
        self._gpus: dict[tuple[str, int, int], int] = {}
        self._latest_block: tuple[int, datetime] | None = None
        self.unreadable: dict[str, str] = {}  # lease (or record) skipped at the last sync: why

    def lease_records(self) -> list[object]:
        """Every lease of this provider, all states, following `pagination.next_key` (with a
        key the node ignores the filters: the key carries them)."""
        out: list[object] = []
        key, seen = None, set()
        for _ in range(MAX_PAGES):
            params = {"filters.provider": self.provider, "pagination.limit": str(self.page_limit)}
            if key:
                params["pagination.key"] = key
            doc = self._get(LEASES_PATH, params)
            page = doc.get("leases")
            if not isinstance(page, list):
                raise MarketError(f"{self.name}: leases/list answered {_kind(page)} for "
                                  "'leases', not a list")
            out.extend(page)
            key = self._next_key(doc)
            if key is None:
                return out
            if key in seen:
                raise MarketError(f"{self.name}: leases/list answered a pagination.next_key "
                                  "it had answered before")
            seen.add(key)
        raise MarketError(f"{self.name}: leases/list still paging after {MAX_PAGES} pages")

    def _next_key(self, doc: dict) -> str | None:
        pagination = doc.get("pagination")
        key = pagination.get("next_key") if isinstance(pagination, dict) else None
        if pagination is not None and not isinstance(pagination, dict):
            raise MarketError(f"{self.name}: leases/list pagination is {_kind(pagination)}")
        if key is None or key == "":
            return None
        try:
            base64.b64decode(key, validate=True)
        except (TypeError, ValueError):
            raise MarketError(f"{self.name}: leases/list pagination.next_key is {_show(key)}, "
                              "not base64") from None
        return key

    def leases_and_payouts(self, now: datetime) -> tuple[list[Lease], list[Payout]]:
        """Leases, and per lease one cumulative payout: what it has earned so far (USD).
        A record that cannot be read is skipped and logged once, with its id and why."""
        self._latest_block = None  # heights turn into times against this sync's latest block
        leases: dict[str, Lease] = {}
        payouts: dict[str, Payout] = {}
        unreadable: dict[str, str] = {}
        for index, rec in enumerate(self.lease_records()):
            try:
                lease, payout = self._parse(rec, now)
            except Unreadable as exc:
                unreadable[_record_name(rec, index)] = str(exc)
                continue
            leases[lease.lease_id], payouts[lease.lease_id] = lease, payout
        self._note_unreadable(unreadable)
        return list(leases.values()), list(payouts.values())

    def _note_unreadable(self, now_unreadable: dict[str, str]) -> None:
        """Log a skipped record when it starts to be skipped (or for a new reason), not at
        every sync."""
        for name, why in now_unreadable.items():
            if self.unreadable.get(name) != why:
                log.warning("%s: lease %s skipped: %s", self.name, name, redact(why))
        for name in self.unreadable.keys() - now_unreadable.keys():
            log.info("%s: lease %s is no longer skipped", self.name, name)
        self.unreadable = now_unreadable

    def _parse(self, rec: object, now: datetime) -> tuple[Lease, Payout]:
        ref = lease_ref(rec)
        provider = text_at(rec, "lease.id.provider")
        if provider != self.provider:
            raise Unreadable(f"lease.id.provider: is {provider}, not this provider")
        state = text_at(rec, "lease.state")
        if state not in LEASE_STATES:
            raise Unreadable(f"lease.state: {_show(state)} is not one of "
                             f"{', '.join(LEASE_STATES)}")
        usd_per_block = self._usd_at(rec, "lease.price")
        created, closed_on = count_at(rec, "lease.created_at"), count_at(rec, "lease.closed_on")
        if closed_on and closed_on < created:
            raise Unreadable(f"lease.closed_on: {closed_on} is before lease.created_at {created}")
        earned = float(self._earned(rec, ref, provider))
        gpus = self._group_gpus(ref)
        usd_per_hour = float(usd_per_block) * 3600.0 / self.block_seconds
        # a lease without GPUs (a CPU-only group) earns like any other but is no GPU lease:
        # it holds no GPU and has no price per GPU-hour
        per_gpu_hour = usd_per_hour / gpus if gpus else 0.0
        status = LEASE_STATES[state]
        ended = self._block_time(closed_on) if status == CLOSED and closed_on else None
        lease = Lease(self.name, ref.lease_id, gpus, per_gpu_hour, status,
                      self._block_time(created), ended)
        return lease, Payout(self.name, f"{ref.lease_id}@{earned:.6f}", ref.lease_id, now,
                             earned, cumulative=True)

    def _earned(self, rec: object, ref: LeaseRef, provider: str) -> Decimal:
        """What the lease has earned so far: its escrow payment's withdrawn (paid out to the
        provider) plus balance (settled to it, not yet withdrawn); `unsettled` is owed by an
        overdrawn account, not earned (akash-network/node x/escrow/keeper/keeper.go:
        accountSettleFullBlocks adds to balance, paymentWithdraw moves balance to withdrawn)."""
        xid = (text_at(rec, "escrow_payment.id.aid.xid"), text_at(rec, "escrow_payment.id.xid"))
        if xid != (f"{ref.owner}/{ref.dseq}", f"{ref.gseq}/{ref.oseq}/{provider}"):
            raise Unreadable(f"escrow_payment.id: is {'/'.join(xid)}, not the lease's payment")
        return (self._usd_at(rec, "escrow_payment.state.withdrawn")
                + self._usd_at(rec, "escrow_payment.state.balance"))

    def _usd_at(self, rec: object, path: str) -> Decimal:
        """A coin at `path` in US dollars: uact is 1e-6 USD (1 ACT = 1 USD), uakt at akt_usd."""
        denom = text_at(rec, f"{path}.denom")
        amount = amount_at(rec, f"{path}.amount")
        if denom == "uact":
            return amount / MICRO
        if denom == "uakt":
            if self.akt_usd <= 0:
                raise Unreadable(f"{path}: pays in uakt; set markets.akash.akt_usd to read it")
            return amount / MICRO * Decimal(repr(self.akt_usd))
        raise Unreadable(f"{path}.denom: {_show(denom)} is neither uact nor uakt")

    def _group_gpus(self, ref: LeaseRef) -> int:
        if ref.group not in self._gpus:
            where = f"group {'/'.join(map(str, ref.group))}"
            try:
                doc = self._fetch(GROUP_PATH, {"id.owner": ref.owner, "id.dseq": str(ref.dseq),
                                               "id.gseq": str(ref.gseq)})
                self._gpus[ref.group] = group_gpus(doc, ref)
            except _BadAnswer as exc:
                raise Unreadable(f"{where}: GET {GROUP_PATH} {exc}") from None
            except Unreadable as exc:
                raise Unreadable(f"{where}: {exc}") from None
        return self._gpus[ref.group]

    def _block_time(self, height: int) -> datetime:
        """A block height as a time, counted back from the latest block at the block time."""
        latest_height, latest_time = self._latest()
        return latest_time - timedelta(seconds=(latest_height - height) * self.block_seconds)

    def _latest(self) -> tuple[int, datetime]:
        if self._latest_block is None:
            doc = self._get(LATEST_BLOCK_PATH, {})
            try:
                self._latest_block = (count_at(doc, "block.header.height"),
                                      chain_time(text_at(doc, "block.header.time")))
            except (Unreadable, ValueError) as exc:
                raise MarketError(f"{self.name}: latest block is unreadable: {exc}") from None
        return self._latest_block

    def _get(self, path: str, params: dict) -> dict:
        try:
            return self._fetch(path, params)
        except _BadAnswer as exc:
            raise MarketError(f"{self.name}: GET {path} {exc}") from None

    def _fetch(self, path: str, params: dict) -> dict:
        """One document: MarketError when the node cannot be reached, _BadAnswer when what it
        answers is no JSON object."""
        try:
            with self.session.get(self.rest_url + path, params=params, timeout=self.timeout_s,
                                  stream=True) as r:
                body = read_capped(r)
        except requests.RequestException as exc:
            raise MarketError(f"{self.name}: GET {path} failed: {http_failure(exc)}") from None
        if r.status_code != 200:
            raise _BadAnswer(f"answered HTTP {r.status_code}: {_excerpt(body)}")
        return json_object(body)


def _record_name(rec: object, index: int) -> str:
    """A skipped record's lease id, or where it was when even that cannot be read."""
    try:
        return lease_ref(rec).lease_id
    except Unreadable:
        return f"#{index + 1} of leases/list"


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
        where = f"akash provider {self.url}: /status"
        try:
            with self.session.get(self.url + "/status", timeout=self.timeout_s,
                                  verify=self.verify, stream=True) as r:
                body = read_capped(r)
        except _BadAnswer as exc:
            raise MarketError(f"{where} {exc}") from None
        except requests.RequestException as exc:
            raise MarketError(f"akash provider {self.url}: /status failed: {http_failure(exc)}"
                              ) from None
        except OSError:  # requests' own check of the CA file: gone since sunrig started
            raise MarketError(f"akash provider {self.url}: /status failed: the CA file "
                              f"{self.verify} is missing") from None
        if r.status_code != 200:
            raise MarketError(f"{where} answered HTTP {r.status_code}")
        try:
            doc = json_object(body)
            address = text_at(doc, "address") if doc.get("address") else ""
            cluster = doc.get("cluster")
            untold = cluster is None or isinstance(cluster, dict) and "leases" not in cluster
            leases = 0 if untold else count_at(doc, "cluster.leases", UINT32_MAX)
        except _BadAnswer as exc:
            raise MarketError(f"{where} {exc}") from None
        except Unreadable as exc:
            raise MarketError(f"{where}: {exc}") from None
        if address and address != self.address:
            raise MarketError(f"akash provider {self.url} is {address}, not {self.address}")
        return leases


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
