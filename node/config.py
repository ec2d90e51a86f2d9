"""TOML configuration into frozen dataclasses.

One generic builder walks the dataclass tree: unknown keys, wrong types, out-of-range values and
malformed values are ConfigErrors naming the file, the dotted key and what is allowed. Every
number is finite and within a plausible range for what it is, every text is short and free of
control characters, every list is of a bounded length: the same rules for the config file and
for the settings the owner changes from the dashboard.
"""

from __future__ import annotations

import math
import re
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from energy.files import FileProblem, decode_utf8, read_bytes
from energy.series import EMBEDDED_PREFIX
from energy.tariff import compile_formula
from market_adapter.akash_bid_server import parse_listen
from market_adapter.hyperbolic import PLATFORM_FEE_PCT
from node.errors import ConfigError
from node.inference.names import check_model_name

DEFAULT_CONFIG_PATH = "/etc/sunrig/sunrig.toml"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Plausible bounds shared by the fields of one kind. They lie far beyond any real rig and in any
# currency, so they only stop what is a typo or garbage (1e308, a price of a billion) before it
# reaches the planner, the books or the dashboard.
MAX_GPUS = 64
MAX_GPU_POWER_W = 5_000.0  # one GPU, cooling not included
MAX_SITE_POWER_W = 10_000_000.0  # a site's connection, inverter or battery: 10 MW
MAX_PV_KWP = 10_000.0
MAX_BATTERY_KWH = 100_000.0
MAX_AMOUNT = 1e12  # a CapEx item, in the site's currency (whatever its unit is worth)
MAX_AMOUNT_PER_MONTH = 1e10
MAX_PRICE_PER_KWH = 1_000.0  # day-ahead prices spike and go negative; both stay well inside
MAX_PRICE_PER_GPU_HOUR = 10_000.0
MAX_USD = 1e6  # a token's price or a monthly fee in USD
MAX_CURRENCY_RATE = 1e6  # units of one currency per unit of another (USD to IDR is 16 000)
MIN_CURRENCY_RATE = 1e-6
MAX_LEASE_HOURS = 8_760.0  # a year
MAX_ORDERS_PER_HOUR = 1_000.0
MAX_INTERVAL_S = 86_400.0  # how often a job runs: at least once a day
MAX_SEED = 2**32 - 1
MAX_TEXT_CHARS = 512
MAX_PATH_CHARS = 4_096  # Linux's PATH_MAX
MAX_LIST_ITEMS = 1_000
MAX_CONFIG_BYTES = 1 << 20  # a config file is a few KiB
FIRST_DATE, LAST_DATE = date(1970, 1, 1), date(2099, 12, 31)
SHOWN_CHARS = 60
# control characters (C0, DEL, C1), lone surrogates (which no file or database can store), and
# line and paragraph separators: none belongs in a one-line value
UNPRINTABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})


def shown(value: Any) -> str:
    """A value as an error message quotes it, cut short: a huge or hostile value never floods a
    page or a log, and a list or table is named by its type, never printed whole."""
    if isinstance(value, str):
        return repr(value[:SHOWN_CHARS]) + ("..." if len(value) > SHOWN_CHARS else "")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a whole number beyond 64 bits"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _timezone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {shown(value)}; use an IANA name such as "
                         "'Europe/Amsterdam'") from None


def _hhmm(value: str) -> None:
    m = re.fullmatch(r"(\d{2}):(\d{2})", value)
    if not m or int(m[1]) > 24 or int(m[2]) > 59 or (int(m[1]) == 24 and int(m[2]) != 0):
        raise ValueError(f"{shown(value)} is not a time of day as HH:MM (00:00 to 24:00)")


def _weekday(value: str) -> None:
    if value not in WEEKDAYS:
        raise ValueError(f"{shown(value)} is not a weekday; allowed: {', '.join(WEEKDAYS)}")


def _iso_date(value: str) -> None:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{shown(value)} is not a date as YYYY-MM-DD") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise ValueError(f"{value} is not between {FIRST_DATE} and {LAST_DATE}")


def _formula(value: str) -> None:
    compile_formula(value)


def num(lo: float, hi: float) -> dict:
    """Field metadata of a number (or of each number in a list): the range it must lie in."""
    return {"min": lo, "max": hi}


def string(check: Callable[[str], None] | None = None, path: bool = False) -> dict:
    """Field metadata of a text: an extra check, and whether it is a file path (taken from the
    config file's folder when relative)."""
    return {"check": check, "path": path}


@dataclass(frozen=True)
class SiteConfig:
    name: str = "My GPU rig"
    timezone: str = field(default="UTC", metadata=string(check=_timezone))
    currency: str = "EUR"
    latitude: float = field(default=52.0, metadata=num(-90, 90))
    longitude: float = field(default=5.0, metadata=num(-180, 180))
    # the PV array, for the forecast; 0 kWp: forecast PV from the past week's profile instead
    pv_kwp: float = field(default=0.0, metadata=num(0, MAX_PV_KWP))
    pv_tilt_deg: float = field(default=35.0, metadata=num(0, 90))
    pv_azimuth_deg: float = field(default=180.0, metadata=num(0, 360))  # 180: south
    # where the array's forecast comes from: the clear sky alone, or a forecast service with the
    # clear sky standing in wherever the service fails or has no value
    pv_forecast: Literal["clear_sky", "forecast_solar", "open_meteo"] = "clear_sky"
    pv_forecast_api_key_file: str = field(default="", metadata=string(path=True))  # paid tier
    # forecast.solar's free tier allows 12 calls an hour per IP: at most hourly
    pv_forecast_refresh_s: float = field(default=3600.0, metadata=num(3600, MAX_INTERVAL_S))
    breaker_limit_w: float = field(default=25_000.0, metadata=num(500, MAX_SITE_POWER_W))
    host_overhead_w: float = field(default=800.0, metadata=num(0, MAX_SITE_POWER_W))
    cooling_factor: float = field(default=1.2, metadata=num(1.0, 3.0))


@dataclass(frozen=True)
class SimulatedGpusConfig:
    count: int = field(default=8, metadata=num(1, MAX_GPUS))
    model: str = "h200"
    name: str = "NVIDIA H200"
    memory_gib: float = field(default=141.0, metadata=num(1, 4096))
    interface: str = "sxm"
    idle_w: float = field(default=90.0, metadata=num(0, MAX_GPU_POWER_W))
    busy_w: float = field(default=650.0, metadata=num(1, MAX_GPU_POWER_W))
    power_limit_w: float = field(default=700.0, metadata=num(1, MAX_GPU_POWER_W))
    min_power_limit_w: float = field(default=200.0, metadata=num(1, MAX_GPU_POWER_W))
    seed: int = field(default=7, metadata=num(0, MAX_SEED))


@dataclass(frozen=True)
class GpusConfig:
    backend: Literal["simulated", "nvml"] = "simulated"
    simulated: SimulatedGpusConfig = field(default_factory=SimulatedGpusConfig)
    # `sunrig run` books real money: it runs a simulated rig only when this says so
    allow_simulated: bool = False
    # the root power-cap helper's socket (systemd/sunrig-powercap.socket), asked when the agent
    # is not root; empty: the agent sets limits itself, which NVML allows only as root
    powercap_socket: str = field(default="/run/sunrig-powercap.sock", metadata=string(path=True))


@dataclass(frozen=True)
class ReservationWindow:
    days: tuple[str, ...] = field(metadata=string(check=_weekday))
    start: str = field(metadata=string(check=_hhmm))
    end: str = field(metadata=string(check=_hhmm))
    gpus: int = field(metadata=num(0, MAX_GPUS))


@dataclass(frozen=True)
class LocalConfig:
    reserved_gpus: int = field(default=1, metadata=num(0, MAX_GPUS))
    schedule: tuple[ReservationWindow, ...] = ()
    # strict: the plan keeps every reserved GPU free for the owner's own models (a lease is
    # never planned to run into a reserved window); soft: it may, when selling earns more than
    # renting the GPU elsewhere at the market's price would cost
    reservation: Literal["soft", "strict"] = "strict"


@dataclass(frozen=True)
class BatteryConfig:
    capacity_kwh: float = field(default=0.0, metadata=num(0, MAX_BATTERY_KWH))
    max_charge_w: float = field(default=5000.0, metadata=num(0, MAX_SITE_POWER_W))
    max_discharge_w: float = field(default=5000.0, metadata=num(0, MAX_SITE_POWER_W))
    min_soc_pct: float = field(default=10.0, metadata=num(0, 100))
    initial_soc_pct: float = field(default=50.0, metadata=num(0, 100))


@dataclass(frozen=True)
class SimulatedSiteConfig:
    data_file: str = field(default=EMBEDDED_PREFIX + "household_2024_30min.csv.gz",
                           metadata=string(path=True))
    pv_array_kwp: float = field(default=5.0, metadata=num(0, MAX_PV_KWP))
    trace_array_kwp: float = field(default=5.0, metadata=num(0.1, MAX_PV_KWP))
    battery: BatteryConfig = field(default_factory=BatteryConfig)
    # serve the simulated site as a SunSpec device on 127.0.0.1 and read it over Modbus TCP,
    # the path a real rig's inverter takes; 0 = any free port
    serve_modbus: bool = False
    modbus_port: int = field(default=0, metadata=num(0, 65535))


@dataclass(frozen=True)
class ModbusSiteConfig:
    """A site read over Modbus TCP: SunSpec devices, or one vendor's register map."""

    host: str = "127.0.0.1"
    port: int = field(default=502, metadata=num(1, 65535))
    # SunSpec: every unit with a model sunrig reads; a unit id is one byte
    units: tuple[int, ...] = field(default=(1,), metadata=num(0, 255))
    map: Literal["", "huawei_sun2000", "victron_gx", "sma_hybrid", "solaredge_meter"] = ""
    meter_import_positive: bool = True  # SunSpec meters differ: SolarEdge's is export-positive
    battery_charge_positive: bool = True
    timeout_s: float = field(default=2.0, metadata=num(0.1, 60))


@dataclass(frozen=True)
class MqttMappingConfig:
    topic: str
    field: Literal["pv_w", "load_w", "grid_w", "battery_w", "soc_pct"]
    json_path: str = ""
    # the payload's unit to the field's: 1000 for kW, -1 to turn the sign, 0.001 for mW
    scale: float = field(default=1.0, metadata=num(-1e6, 1e6))
    timeout_s: float = field(default=60.0, metadata=num(1, MAX_INTERVAL_S))


@dataclass(frozen=True)
class MqttSiteConfig:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata=num(1, 65535))
    username: str = ""
    password_file: str = field(default="", metadata=string(path=True))
    tls_ca_file: str = field(default="", metadata=string(path=True))
    victron_portal: str = ""  # set: publish the keepalive a Venus GX needs
    mappings: tuple[MqttMappingConfig, ...] = ()


@dataclass(frozen=True)
class EnergyConfig:
    # simulated: the recorded household; modbus: SunSpec or a register map; mqtt: topics;
    # none: no site readings yet (the rig's energy is booked at the grid price, the plan sees
    # no solar), the starter's state until the owner names a source
    source: Literal["simulated", "modbus", "mqtt", "none"] = "simulated"
    simulated: SimulatedSiteConfig = field(default_factory=SimulatedSiteConfig)
    allow_simulated: bool = False  # `sunrig run` runs a simulated site only when this says so
    modbus: ModbusSiteConfig = field(default_factory=ModbusSiteConfig)
    mqtt: MqttSiteConfig = field(default_factory=MqttSiteConfig)


@dataclass(frozen=True)
class TouPeriod:
    """A time-of-use period: on these days from start to end, these prices."""

    days: tuple[str, ...] = field(metadata=string(check=_weekday))
    start: str = field(metadata=string(check=_hhmm))
    end: str = field(metadata=string(check=_hhmm))
    import_per_kwh: float = field(metadata=num(-MAX_PRICE_PER_KWH, MAX_PRICE_PER_KWH))
    export_per_kwh: float = field(metadata=num(-MAX_PRICE_PER_KWH, MAX_PRICE_PER_KWH))


@dataclass(frozen=True)
class TariffConfig:
    # day_ahead: prices_file (CSV); awattar, entsoe: fetched from the web, refreshed hourly;
    # time_of_use: import/export_per_kwh outside the periods, each period's prices within
    # mqtt: a JSON list of slots on mqtt_topic
    kind: Literal["fixed", "day_ahead", "awattar", "entsoe", "time_of_use", "mqtt"] = "day_ahead"
    import_per_kwh: float = field(default=0.30,
                                  metadata=num(-MAX_PRICE_PER_KWH, MAX_PRICE_PER_KWH))
    export_per_kwh: float = field(default=0.05,
                                  metadata=num(-MAX_PRICE_PER_KWH, MAX_PRICE_PER_KWH))
    prices_file: str = field(default=EMBEDDED_PREFIX + "nl_day_ahead_2024_2025.csv.gz",
                             metadata=string(path=True))
    replay: bool = False
    import_formula: str = field(default="(spot + 0.02 + 0.1088) * 1.21",
                                metadata=string(check=_formula))
    export_formula: str = field(default="spot - 0.01", metadata=string(check=_formula))
    awattar_country: Literal["de", "at"] = "de"
    entsoe_zone: str = "10YNL----------L"  # the bidding zone's EIC code
    entsoe_token_file: str = field(default="/etc/sunrig/entsoe.token", metadata=string(path=True))
    periods: tuple[TouPeriod, ...] = ()
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = field(default=1883, metadata=num(1, 65535))
    mqtt_topic: str = "sunrig/prices"


@dataclass(frozen=True)
class SimMarketConfig:
    # simulated tenants and money: off unless a config (the demo's) turns it on, and `sunrig
    # run` runs it only with allow_simulated as well
    enabled: bool = False
    allow_simulated: bool = False
    reference_price_per_gpu_hour: float = field(default=2.30,
                                                metadata=num(0, MAX_PRICE_PER_GPU_HOUR))
    price_spread: float = field(default=0.25, metadata=num(0, 2))
    orders_per_hour: float = field(default=1.5, metadata=num(0, MAX_ORDERS_PER_HOUR))
    mean_lease_hours: float = field(default=8.0, metadata=num(0.05, MAX_LEASE_HOURS))
    max_gpus_per_order: int = field(default=8, metadata=num(1, MAX_GPUS))
    ask_price_per_gpu_hour: float = field(default=2.20, metadata=num(0, MAX_PRICE_PER_GPU_HOUR))
    currency_rate: float = field(default=1.0,
                                 metadata=num(MIN_CURRENCY_RATE, MAX_CURRENCY_RATE))
    seed: int = field(default=42, metadata=num(0, MAX_SEED))


@dataclass(frozen=True)
class StoragePricesConfig:
    """USD per GiB-month by Akash storage class."""

    ephemeral: float = field(default=0.02, metadata=num(0, 100))
    beta1: float = field(default=0.01, metadata=num(0, 100))  # persistent HDD
    beta2: float = field(default=0.03, metadata=num(0, 100))  # persistent SSD
    beta3: float = field(default=0.04, metadata=num(0, 100))  # persistent NVMe


def _bid_listen(value: str) -> None:
    # the address's form here; whether it may be 0.0.0.0 depends on bid_listen_any, checked
    # when the endpoint starts
    parse_listen(value, allow_any=True)


def _akash_value(value: str) -> None:
    if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
        raise ValueError(f"{shown(value)} is not an attribute value: letters, digits, '.', '_' "
                         "and '-', at most 64")


def _gpu_ram(value: str) -> None:
    if value and not re.fullmatch(r"[1-9][0-9]{0,4}Gi", value):
        raise ValueError(f"{shown(value)} is not GPU memory as Akash names it, such as '141Gi'")


@dataclass(frozen=True)
class AkashConfig:
    """Selling through the Akash provider (provider-services) running on the rig's Kubernetes."""

    enabled: bool = False
    provider_address: str = ""  # akash1...: whose leases to read
    rest_url: str = "https://api.akashnet.net"  # a chain REST (LCD) endpoint
    provider_url: str = ""  # the provider's own API, e.g. https://provider.example:8443
    provider_ca_file: str = field(default="", metadata=string(path=True))  # empty: unverified
    offer_file: str = field(default="/var/lib/sunrig/akash-offer.json", metadata=string(path=True))
    offer_valid_s: float = field(default=300.0, metadata=num(60, MAX_INTERVAL_S))
    # the bid endpoint the provider's bid-price script asks: an address of this node that the
    # provider's pod reaches; 0.0.0.0 or :: only with bid_listen_any
    bid_listen: str = field(default="127.0.0.1:8787", metadata=string(check=_bid_listen))
    bid_listen_any: bool = False
    bid_token_file: str = field(default="/var/lib/sunrig/akash-bid.token",
                                metadata=string(path=True))
    region: str = field(default="", metadata=string(check=_akash_value))  # attribute `region`
    # GPU memory as Akash names it; empty: the GPUs' memory rounded up to whole GiB
    gpu_ram: str = field(default="", metadata=string(check=_gpu_ram))
    margin_pct: float = field(default=5.0, metadata=num(0, 1000))
    block_seconds: float = field(default=6.117, metadata=num(0.1, 600))
    akt_usd: float = field(default=0.0, metadata=num(0, MAX_USD))  # only for orders still in uakt
    cpu_usd_per_core_hour: float = field(default=0.0022, metadata=num(0, 100))
    memory_usd_per_gib_hour: float = field(default=0.0011, metadata=num(0, 100))
    endpoint_usd_per_month: float = field(default=0.05, metadata=num(0, MAX_USD))
    ip_usd_per_month: float = field(default=5.0, metadata=num(0, MAX_USD))
    storage_usd_per_gib_month: StoragePricesConfig = field(default_factory=StoragePricesConfig)
    gpu_interface: Literal["sxm", "pcie"] = "sxm"
    # what the planner expects of Akash demand for this rig (USD), until lease history says more
    expected_usd_per_gpu_hour: float = field(default=2.30,
                                             metadata=num(0, MAX_PRICE_PER_GPU_HOUR))
    ask_usd_per_gpu_hour: float = field(default=1.80, metadata=num(0, MAX_PRICE_PER_GPU_HOUR))
    orders_per_hour: float = field(default=0.5, metadata=num(0, MAX_ORDERS_PER_HOUR))
    price_spread: float = field(default=0.25, metadata=num(0, 2))
    mean_lease_hours: float = field(default=24.0, metadata=num(0.05, MAX_LEASE_HOURS))


@dataclass(frozen=True)
class HyperbolicConfig:
    """Supplying through HyperdOS; the owner's API key is read from `api_key_file`."""

    enabled: bool = False
    api_key_file: str = field(default="/etc/sunrig/hyperbolic.key", metadata=string(path=True))
    base_url: str = "https://api.hyperbolic.xyz"
    state_file: str = field(default="/var/lib/sunrig/hyperbolic.json", metadata=string(path=True))
    # the share of rental income Hyperbolic keeps; every price below is a listed price, which
    # the rig earns less this fee
    platform_fee_pct: float = field(default=PLATFORM_FEE_PCT, metadata=num(0, 99))
    expected_usd_per_gpu_hour: float = field(default=2.20,
                                             metadata=num(0, MAX_PRICE_PER_GPU_HOUR))
    ask_usd_per_gpu_hour: float = field(default=1.50, metadata=num(0, MAX_PRICE_PER_GPU_HOUR))
    orders_per_hour: float = field(default=0.3, metadata=num(0, MAX_ORDERS_PER_HOUR))
    price_spread: float = field(default=0.10, metadata=num(0, 2))
    mean_lease_hours: float = field(default=12.0, metadata=num(0.05, MAX_LEASE_HOURS))


@dataclass(frozen=True)
class MarketsConfig:
    usd_per_site_currency: float = field(default=1.0,  # for Akash, Hyperbolic
                                         metadata=num(MIN_CURRENCY_RATE, MAX_CURRENCY_RATE))
    sim: SimMarketConfig = field(default_factory=SimMarketConfig)
    akash: AkashConfig = field(default_factory=AkashConfig)
    hyperbolic: HyperbolicConfig = field(default_factory=HyperbolicConfig)


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _dns_label(value: str) -> None:
    """A namespace name as Kubernetes allows it (RFC 1123 label): one rule for every
    namespace sunrig is told of, so a typo fails at the start, not as an API error later."""
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(f"{shown(value)} is not a Kubernetes namespace name: 1 to 63 lower "
                         "case letters, digits or '-', starting and ending with a letter or digit")


def _dns_subdomain(value: str) -> None:
    """A node name as Kubernetes allows it (RFC 1123 subdomain); empty while kube is off."""
    if value and (len(value) > 253 or not all(_DNS_LABEL.fullmatch(p)
                                              for p in value.split("."))):
        raise ValueError(f"{shown(value)} is not a Kubernetes node name: labels of lower case "
                         "letters, digits or '-' joined by '.', at most 253 characters")


@dataclass(frozen=True)
class KubeConfig:
    """The GPU split on the rig's Kubernetes: hold pods keep GPUs away from the providers, and
    the kubelet's PodResources API tells which pod holds which GPU."""

    enabled: bool = False
    namespace: str = field(default="sunrig", metadata=string(check=_dns_label))
    node_name: str = field(default="", metadata=string(check=_dns_subdomain))
    kubeconfig: str = ""  # empty: in-cluster service account, else ~/.kube/config
    hold_image: str = "registry.k8s.io/pause:3.10"
    # the kubelet's PodResources socket (mounted read-only into a pod); empty: not read, and
    # hold pods count by their phase alone
    pod_resources_socket: str = field(default="/var/lib/kubelet/pod-resources/kubelet.sock",
                                      metadata=string(path=True))
    # HyperdOS runs rentals in `instance` and its GPU filler in `hyperpool`
    hyperbolic_namespaces: tuple[str, ...] = field(default=("instance", "hyperpool"),
                                                   metadata=string(check=_dns_label))
    # the owner's own GPU pods, besides those in `namespace`
    local_namespaces: tuple[str, ...] = field(default=(), metadata=string(check=_dns_label))
    # a hold pod still Pending (or Running without its GPU) this long is replaced
    hold_grace_s: float = field(default=300.0, metadata=num(10, 86_400))


@dataclass(frozen=True)
class PlannerConfig:
    kind: Literal["milp", "rule"] = "milp"  # rule: the simple fallback, no optimisation
    solve_time_limit_s: float = field(default=5.0, metadata=num(0.1, 120))
    horizon_hours: int = field(default=48, metadata=num(1, 168))
    slot_minutes: Literal[15, 30, 60] = 15
    wear_per_gpu_hour: float = field(default=0.10, metadata=num(0, MAX_PRICE_PER_GPU_HOUR))
    margin_per_gpu_hour: float = field(default=0.10, metadata=num(0, MAX_PRICE_PER_GPU_HOUR))
    min_floor_per_gpu_hour: float = field(default=0.50, metadata=num(0, MAX_PRICE_PER_GPU_HOUR))


@dataclass(frozen=True)
class CapexItem:
    name: str
    amount: float = field(metadata=num(0, MAX_AMOUNT))
    date: str = field(metadata=string(check=_iso_date))


@dataclass(frozen=True)
class OpexItem:
    name: str
    amount_per_month: float = field(metadata=num(0, MAX_AMOUNT_PER_MONTH))
    since: str = field(metadata=string(check=_iso_date))


@dataclass(frozen=True)
class CapexConfig:
    items: tuple[CapexItem, ...] = ()
    opex: tuple[OpexItem, ...] = ()


@dataclass(frozen=True)
class TeeConfig:
    # auto: attest through NVML when the GPUs are read through NVML, never on a simulated rig
    backend: Literal["auto", "nvml", "off"] = "auto"
    attest_every_s: float = field(default=3600.0, metadata=num(60, 7 * MAX_INTERVAL_S))
    premium_pct: float = field(default=10.0, metadata=num(0, 100))
    rims: tuple[str, ...] = field(default=(), metadata=string(path=True))
    vcek: str = field(default="", metadata=string(path=True))
    amd_cert_chain: str = field(default="", metadata=string(path=True))
    configfs_tsm: str = field(default="/sys/kernel/config/tsm/report", metadata=string(path=True))


@dataclass(frozen=True)
class WebuiConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=num(1, 65535))
    allow_lan: bool = False


@dataclass(frozen=True)
class HomeAssistantConfig:
    """MQTT discovery, so Home Assistant's energy dashboard shows the rig."""

    enabled: bool = False
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = field(default=1883, metadata=num(1, 65535))
    username: str = ""
    password_file: str = field(default="", metadata=string(path=True))
    discovery_prefix: str = "homeassistant"
    node_id: str = "sunrig"
    every_s: float = field(default=30.0, metadata=num(1, 3600))


@dataclass(frozen=True)
class InferenceServerConfig:
    """One model served on the local GPUs: a preset's command line, or the owner's own."""

    model: str = field(metadata=string(check=check_model_name))  # what clients ask for
    # llama-server (llama.cpp), vllm (`vllm serve`), ollama (`ollama serve`), command: `args`
    # is the whole command line, with {port}, {model} and {model_path} filled in
    preset: Literal["llama-server", "vllm", "ollama", "command"] = "llama-server"
    model_path: str = field(default="", metadata=string(path=True))
    args: tuple[str, ...] = ()  # added to a preset's command line
    port: int = field(default=0, metadata=num(0, 65535))  # on 127.0.0.1; 0: any free port
    health_path: str = ""  # empty: the preset's own (/health, /api/version, /v1/models)
    gpus: int = field(default=1, metadata=num(0, MAX_GPUS))  # local GPUs it is pinned to
    # requests the gateway passes it at once (llama-server gets it as --parallel, ollama as
    # OLLAMA_NUM_PARALLEL); more wait at the gateway, and that wait is the local demand; 0: no line
    parallel: int = field(default=4, metadata=num(0, 1024))


@dataclass(frozen=True)
class InferencePriceConfig:
    """What the same tokens would cost on a hosted API, in the site currency: the value of
    local use in the books."""

    model: str = field(metadata=string(check=check_model_name))
    input_per_million_tokens: float = field(metadata=num(0, MAX_USD))
    output_per_million_tokens: float = field(metadata=num(0, MAX_USD))


@dataclass(frozen=True)
class InferenceConfig:
    """The owner's local inference: supervised servers behind one OpenAI-compatible gateway."""

    enabled: bool = False
    host: str = "127.0.0.1"  # beyond localhost only with allow_lan
    port: int = field(default=8081, metadata=num(1, 65535))
    allow_lan: bool = False
    tls_cert_file: str = field(default="", metadata=string(path=True))  # both or neither
    tls_key_file: str = field(default="", metadata=string(path=True))
    requests_per_minute: float = field(default=120.0, metadata=num(0.1, 1e6))  # per user
    drain_s: float = field(default=60.0, metadata=num(0, 3600))  # before a server moves
    min_local_gpus: int = field(default=0, metadata=num(0, MAX_GPUS))
    max_local_gpus: int = field(default=MAX_GPUS, metadata=num(0, MAX_GPUS))
    # local demand: requests that waited queue_wait_s for a server, unbroken for queue_for_s,
    # keep one more GPU local; none that long for quiet_for_s, and it returns to the market
    queue_wait_s: float = field(default=2.0, metadata=num(0.01, 3600))
    queue_for_s: float = field(default=300.0, metadata=num(1, 86400))
    quiet_for_s: float = field(default=3600.0, metadata=num(60, 7 * 86400))
    # demo only: a simulated server, labelled so, answers for `simulated_model`
    simulated: bool = False
    simulated_model: str = field(default="sunrig-simulated", metadata=string(
        check=check_model_name))
    servers: tuple[InferenceServerConfig, ...] = ()
    prices: tuple[InferencePriceConfig, ...] = ()


@dataclass(frozen=True)
class StoreConfig:
    path: str = field(default="/var/lib/sunrig/sunrig.db", metadata=string(path=True))
    raw_retention_days: float = field(default=14.0, metadata=num(0.01, 3650))


@dataclass(frozen=True)
class AgentConfig:
    site_poll_s: float = field(default=10.0, metadata=num(0.1, 3600))
    gpu_poll_s: float = field(default=10.0, metadata=num(0.1, 3600))
    apply_every_s: float = field(default=60.0, metadata=num(1, 3600))
    market_sync_s: float = field(default=60.0, metadata=num(1, MAX_INTERVAL_S))
    plan_every_s: float = field(default=900.0, metadata=num(10, MAX_INTERVAL_S))
    ledger_every_s: float = field(default=300.0, metadata=num(10, MAX_INTERVAL_S))
    maintenance_every_s: float = field(default=900.0, metadata=num(10, MAX_INTERVAL_S))


@dataclass(frozen=True)
class SimulationConfig:
    """`sunrig simulate` and the economics benchmark: the period and how often to re-plan."""

    start: str = field(default="2024-01-01", metadata=string(check=_iso_date))
    days: int = field(default=364, metadata=num(1, 3650))
    replan_hours: float = field(default=3.0, metadata=num(0.25, 24))
    horizon_hours: int = field(default=36, metadata=num(6, 168))
    slot_minutes: Literal[15, 30, 60] = 60
    hindsight_block_days: int = field(default=7, metadata=num(1, 28))  # solved at once
    hindsight_lookahead_hours: int = field(default=12, metadata=num(0, 168))
    # the agent runs this period's simulation in the background for the payback page
    project_payback: bool = False



@dataclass(frozen=True)
class Config:
    site: SiteConfig = field(default_factory=SiteConfig)
    gpus: GpusConfig = field(default_factory=GpusConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    tariff: TariffConfig = field(default_factory=TariffConfig)
    markets: MarketsConfig = field(default_factory=MarketsConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    capex: CapexConfig = field(default_factory=CapexConfig)
    tee: TeeConfig = field(default_factory=TeeConfig)
    kube: KubeConfig = field(default_factory=KubeConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    webui: WebuiConfig = field(default_factory=WebuiConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError naming the file and key."""
    path = Path(path)
    text = read_config_text(path)
    if not text.strip():
        raise ConfigError(str(path), "", "is empty; sunrig.example.toml shows every key")
    return parse_config(text, str(path), base_dir=path.parent)


def read_config_text(path: Path) -> str:
    """A config file's text, read by the rule for outside files (energy.files): whatever the
    path holds (nothing, a folder, a FIFO, a device, a huge or binary file) is a ConfigError
    naming it, never a traceback or a read that blocks."""
    try:
        return decode_utf8(read_bytes(path, MAX_CONFIG_BYTES), path)
    except FileProblem as exc:
        raise ConfigError(str(path), "", f"{exc.problem}; a config file is a regular file "
                                         "of a few KiB of TOML, which is UTF-8") from None


def default_config() -> Config:
    """The embedded default: a simulated 8-GPU rig, site and market."""
    text = resources.files("node").joinpath("default.toml").read_text(encoding="utf-8")
    return parse_config(text, "<embedded default.toml>", base_dir=Path.cwd())


def parse_config(text: str, file: str, base_dir: Path) -> Config:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"not valid TOML: {exc}") from None
    except ValueError:  # Python refuses to read a whole number of thousands of digits
        raise ConfigError(file, "", "not valid TOML: a number too long to read") from None
    except RecursionError:  # the parser recurses once per level of nested arrays or tables
        raise ConfigError(file, "", "not valid TOML: arrays or tables nested too deeply") from None
    cfg = _build(Config, table, _Ctx(file, base_dir), "")
    _cross_checks(cfg, file)
    return cfg


@dataclass(frozen=True)
class _Ctx:
    file: str
    base_dir: Path


def build_section(cls: type, table: dict, key: str, file: str = "settings") -> Any:
    """One config section from a table, checked as the config file is (errors name the key)."""
    return _build(cls, table, _Ctx(file, Path.cwd()), key)


def check_config(cfg: Config, file: str = "settings") -> None:
    """The checks that span sections, for a config changed while running."""
    _cross_checks(cfg, file)


def _build(cls: type, table: Any, ctx: _Ctx, prefix: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(ctx.file, prefix, f"must be a table, got {shown(table)}")
    allowed = [f.name for f in fields(cls)]
    for key in table:
        if key not in allowed:
            raise ConfigError(ctx.file, _join(prefix, shown_key(key)),
                              f"unknown key; allowed here: {', '.join(allowed)}")
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        key = _join(prefix, f.name)
        if f.name in table:
            kwargs[f.name] = _convert(hints[f.name], table[f.name], ctx, key, f.metadata)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(ctx.file, key, "is required")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, ctx: _Ctx, key: str, meta: Any) -> Any:
    if is_dataclass(tp):
        return _build(tp, value, ctx, key)
    origin = get_origin(tp)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(ctx.file, key, f"must be a list, got {shown(value)}")
        if len(value) > MAX_LIST_ITEMS:
            raise ConfigError(ctx.file, key, f"must have at most {MAX_LIST_ITEMS} items, "
                                             f"got {len(value)}")
        item_type = get_args(tp)[0]
        return tuple(_convert(item_type, v, ctx, f"{key}[{i}]", meta) for i, v in enumerate(value))
    if origin is Literal:
        choices = get_args(tp)
        # the type too: 15.0 is not the choice 15, True is not 1
        if not any(type(value) is type(c) and value == c for c in choices):
            raise ConfigError(ctx.file, key, f"must be one of {', '.join(map(repr, choices))}, "
                                             f"got {shown(value)}")
        return value
    value = _scalar(tp, value, ctx, key)
    _check_meta(value, ctx, key, meta)
    if meta.get("path") and value and not value.startswith(EMBEDDED_PREFIX):
        value = str((ctx.base_dir / value).resolve()) if not Path(value).is_absolute() else value
    return value


def _scalar(tp: type, value: Any, ctx: _Ctx, key: str) -> Any:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    ok = (isinstance(value, tp) and not (tp is int and isinstance(value, bool))) or (
        tp is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        got = shown(value) if isinstance(value, list | dict) else \
            f"{type(value).__name__} {shown(value)}"
        raise ConfigError(ctx.file, key, f"must be {names[tp]}, got {got}")
    if tp is not float:
        return value
    try:
        number = float(value)
    except OverflowError:  # a whole number too large for a float
        number = math.inf
    if not math.isfinite(number):  # NaN passes every comparison, so it is refused by name
        raise ConfigError(ctx.file, key, f"must be a finite number, got {shown(value)}")
    return number


def _check_meta(value: Any, ctx: _Ctx, key: str, meta: Any) -> None:
    if isinstance(value, str):
        _check_text(value, ctx, key, meta)
        return
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and not lo <= value:
        raise ConfigError(ctx.file, key, f"must be at least {_bound(lo)}, got {shown(value)}")
    if hi is not None and not value <= hi:
        raise ConfigError(ctx.file, key, f"must be at most {_bound(hi)}, got {shown(value)}")


def _check_text(value: str, ctx: _Ctx, key: str, meta: Any) -> None:
    most = MAX_PATH_CHARS if meta.get("path") else MAX_TEXT_CHARS
    if len(value) > most:
        raise ConfigError(ctx.file, key, f"must be at most {most} characters, got {len(value)}")
    if any(unicodedata.category(c) in UNPRINTABLE for c in value):
        raise ConfigError(ctx.file, key, "must not hold control characters (line breaks, tabs, "
                                         f"NUL, lone surrogates), got {shown(value)}")
    check = meta.get("check")
    if check is not None:
        try:
            check(value)
        except ValueError as exc:
            raise ConfigError(ctx.file, key, str(exc)) from None


def _bound(x: float) -> str:
    """A bound as the owner would write it: 10000000, not 1e+07; 0.05, not 0.050000."""
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)


def _cross_checks(cfg: Config, file: str) -> None:
    from node.inference.settings import check_inference
    _check_bid_listen(cfg.markets.akash, file)
    check_inference(cfg.inference, file)
    sim = cfg.gpus.simulated
    if sim.min_power_limit_w > sim.power_limit_w:
        raise ConfigError(file, "gpus.simulated.min_power_limit_w",
                          f"must not exceed power_limit_w ({sim.power_limit_w})")
    if sim.idle_w > sim.busy_w:
        raise ConfigError(file, "gpus.simulated.idle_w", f"must not exceed busy_w ({sim.busy_w})")
    for i, window in enumerate(cfg.local.schedule):
        if window.start >= window.end:
            raise ConfigError(file, f"local.schedule[{i}].end", "must be later than start")
    if cfg.markets.akash.enabled and not cfg.markets.akash.provider_address.startswith("akash1"):
        raise ConfigError(file, "markets.akash.provider_address",
                          "must be the provider's akash1... address when Akash is enabled")
    for i, p in enumerate(cfg.tariff.periods):
        if p.start >= p.end:
            raise ConfigError(file, f"tariff.periods[{i}].end", "must be later than start")
    if cfg.energy.source == "mqtt" and not cfg.energy.mqtt.mappings:
        raise ConfigError(file, "energy.mqtt.mappings", "needs at least one topic to read")
    if cfg.kube.enabled and not cfg.kube.node_name:
        raise ConfigError(file, "kube.node_name", "is required when kube is enabled")
    if cfg.webui.host not in ("127.0.0.1", "localhost", "::1") and not cfg.webui.allow_lan:
        raise ConfigError(file, "webui.host",
                          f"{shown(cfg.webui.host)} is beyond localhost; set webui.allow_lan = "
                          "true to serve the dashboard on the LAN")
    _unique_cost_names(cfg.capex, file)


def _unique_cost_names(capex: CapexConfig, file: str) -> None:
    """The books keep CapEx and OpEx items by name, so two items of one name cannot both be
    kept: refused here, before either is stored."""
    seen: dict[str, str] = {}
    keys = [f"capex.items[{i}]" for i in range(len(capex.items))]
    keys += [f"capex.opex[{i}]" for i in range(len(capex.opex))]
    for key, item in zip(keys, (*capex.items, *capex.opex), strict=True):
        if item.name in seen:
            raise ConfigError(file, f"{key}.name", f"{shown(item.name)} already names "
                                                   f"{seen[item.name]}; each item needs its own")
        seen[item.name] = key


def shown_key(key: Any) -> str:
    """An unknown key as an error names it: cut short, so a hostile key cannot flood a page."""
    return key[:SHOWN_CHARS] + "..." if isinstance(key, str) and len(key) > SHOWN_CHARS \
        else str(key)


def _check_bid_listen(a: AkashConfig, file: str) -> None:
    """The bid endpoint's address, checked with its sibling `bid_listen_any` (the endpoint
    listens no wider than the provider's pod needs), so `config check` says it, not the start."""
    from market_adapter.akash_bid_server import parse_listen
    try:
        parse_listen(a.bid_listen, a.bid_listen_any)
    except ValueError as exc:
        raise ConfigError(file, "markets.akash.bid_listen", str(exc)) from None


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
