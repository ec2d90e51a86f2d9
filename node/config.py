"""TOML configuration into frozen dataclasses.

One generic builder walks the dataclass tree: unknown keys, wrong types, out-of-range values and
malformed values are ConfigErrors naming the file, the dotted key and what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from energy.series import EMBEDDED_PREFIX
from energy.tariff import compile_formula
from node.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/sunrig/sunrig.toml"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _timezone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r}; use an IANA name such as "
                         "'Europe/Amsterdam'") from None


def _hhmm(value: str) -> None:
    m = re.fullmatch(r"(\d{2}):(\d{2})", value)
    if not m or int(m[1]) > 24 or int(m[2]) > 59 or (int(m[1]) == 24 and int(m[2]) != 0):
        raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00 to 24:00)")


def _weekday(value: str) -> None:
    if value not in WEEKDAYS:
        raise ValueError(f"{value!r} is not a weekday; allowed: {', '.join(WEEKDAYS)}")


def _iso_date(value: str) -> None:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date as YYYY-MM-DD") from None


def _formula(value: str) -> None:
    compile_formula(value)


def rng(lo: float | None = None, hi: float | None = None, check=None, path: bool = False) -> dict:
    """Field metadata: allowed range, an extra check, and whether it is a file path."""
    return {"min": lo, "max": hi, "check": check, "path": path}


@dataclass(frozen=True)
class SiteConfig:
    name: str = "My GPU rig"
    timezone: str = field(default="UTC", metadata=rng(check=_timezone))
    currency: str = "EUR"
    latitude: float = field(default=52.0, metadata=rng(-90, 90))
    longitude: float = field(default=5.0, metadata=rng(-180, 180))
    # the PV array, for the forecast; 0 kWp: forecast PV from the past week's profile instead
    pv_kwp: float = field(default=0.0, metadata=rng(0))
    pv_tilt_deg: float = field(default=35.0, metadata=rng(0, 90))
    pv_azimuth_deg: float = field(default=180.0, metadata=rng(0, 360))  # 180: south
    breaker_limit_w: float = field(default=25_000.0, metadata=rng(500))
    host_overhead_w: float = field(default=800.0, metadata=rng(0))
    cooling_factor: float = field(default=1.2, metadata=rng(1.0, 3.0))


@dataclass(frozen=True)
class SimulatedGpusConfig:
    count: int = field(default=8, metadata=rng(1, 64))
    model: str = "h200"
    name: str = "NVIDIA H200"
    memory_gib: float = field(default=141.0, metadata=rng(1))
    interface: str = "sxm"
    idle_w: float = field(default=90.0, metadata=rng(0))
    busy_w: float = field(default=650.0, metadata=rng(1))
    power_limit_w: float = field(default=700.0, metadata=rng(1))
    min_power_limit_w: float = field(default=200.0, metadata=rng(1))
    seed: int = 7


@dataclass(frozen=True)
class GpusConfig:
    backend: Literal["simulated", "nvml"] = "simulated"
    simulated: SimulatedGpusConfig = field(default_factory=SimulatedGpusConfig)


@dataclass(frozen=True)
class ReservationWindow:
    days: tuple[str, ...] = field(metadata=rng(check=_weekday))
    start: str = field(metadata=rng(check=_hhmm))
    end: str = field(metadata=rng(check=_hhmm))
    gpus: int = field(metadata=rng(0, 64))


@dataclass(frozen=True)
class LocalConfig:
    reserved_gpus: int = field(default=1, metadata=rng(0, 64))
    schedule: tuple[ReservationWindow, ...] = ()
    # strict: the plan keeps every reserved GPU free for the owner's own models (a lease is
    # never planned to run into a reserved window); soft: it may, when selling earns more than
    # renting the GPU elsewhere at the market's price would cost
    reservation: Literal["soft", "strict"] = "strict"


@dataclass(frozen=True)
class BatteryConfig:
    capacity_kwh: float = field(default=0.0, metadata=rng(0))
    max_charge_w: float = field(default=5000.0, metadata=rng(0))
    max_discharge_w: float = field(default=5000.0, metadata=rng(0))
    min_soc_pct: float = field(default=10.0, metadata=rng(0, 100))
    initial_soc_pct: float = field(default=50.0, metadata=rng(0, 100))


@dataclass(frozen=True)
class SimulatedSiteConfig:
    data_file: str = field(default=EMBEDDED_PREFIX + "household_2024_30min.csv.gz",
                           metadata=rng(path=True))
    pv_array_kwp: float = field(default=5.0, metadata=rng(0))
    trace_array_kwp: float = field(default=5.0, metadata=rng(0.1))
    battery: BatteryConfig = field(default_factory=BatteryConfig)
    # serve the simulated site as a SunSpec device on 127.0.0.1 and read it over Modbus TCP,
    # the path a real rig's inverter takes; 0 = any free port
    serve_modbus: bool = False
    modbus_port: int = field(default=0, metadata=rng(0, 65535))


@dataclass(frozen=True)
class ModbusSiteConfig:
    """A site read over Modbus TCP: SunSpec devices, or one vendor's register map."""

    host: str = "127.0.0.1"
    port: int = field(default=502, metadata=rng(1, 65535))
    units: tuple[int, ...] = (1,)  # SunSpec: every unit with a model sunrig reads
    map: Literal["", "huawei_sun2000", "victron_gx", "sma_hybrid", "solaredge_meter"] = ""
    meter_import_positive: bool = True  # SunSpec meters differ: SolarEdge's is export-positive
    battery_charge_positive: bool = True
    timeout_s: float = field(default=2.0, metadata=rng(0.1, 60))


@dataclass(frozen=True)
class MqttMappingConfig:
    topic: str
    field: Literal["pv_w", "load_w", "grid_w", "battery_w", "soc_pct"]
    json_path: str = ""
    scale: float = 1.0
    timeout_s: float = field(default=60.0, metadata=rng(1, 86400))


@dataclass(frozen=True)
class MqttSiteConfig:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata=rng(1, 65535))
    username: str = ""
    password_file: str = field(default="", metadata=rng(path=True))
    tls_ca_file: str = field(default="", metadata=rng(path=True))
    victron_portal: str = ""  # set: publish the keepalive a Venus GX needs
    mappings: tuple[MqttMappingConfig, ...] = ()


@dataclass(frozen=True)
class EnergyConfig:
    # simulated: the recorded household; modbus: SunSpec or a register map; mqtt: topics
    source: Literal["simulated", "modbus", "mqtt"] = "simulated"
    simulated: SimulatedSiteConfig = field(default_factory=SimulatedSiteConfig)
    modbus: ModbusSiteConfig = field(default_factory=ModbusSiteConfig)
    mqtt: MqttSiteConfig = field(default_factory=MqttSiteConfig)


@dataclass(frozen=True)
class TouPeriod:
    """A time-of-use period: on these days from start to end, these prices."""

    days: tuple[str, ...] = field(metadata=rng(check=_weekday))
    start: str = field(metadata=rng(check=_hhmm))
    end: str = field(metadata=rng(check=_hhmm))
    import_per_kwh: float
    export_per_kwh: float


@dataclass(frozen=True)
class TariffConfig:
    # day_ahead: prices_file (CSV); awattar, entsoe: fetched from the web, refreshed hourly;
    # time_of_use: import/export_per_kwh outside the periods, each period's prices within
    # mqtt: a JSON list of slots on mqtt_topic
    kind: Literal["fixed", "day_ahead", "awattar", "entsoe", "time_of_use", "mqtt"] = "day_ahead"
    import_per_kwh: float = 0.30
    export_per_kwh: float = 0.05
    prices_file: str = field(default=EMBEDDED_PREFIX + "nl_day_ahead_2024_2025.csv.gz",
                             metadata=rng(path=True))
    replay: bool = False
    import_formula: str = field(default="(spot + 0.02 + 0.1088) * 1.21",
                                metadata=rng(check=_formula))
    export_formula: str = field(default="spot - 0.01", metadata=rng(check=_formula))
    awattar_country: Literal["de", "at"] = "de"
    entsoe_zone: str = "10YNL----------L"  # the bidding zone's EIC code
    entsoe_token_file: str = field(default="/etc/sunrig/entsoe.token", metadata=rng(path=True))
    periods: tuple[TouPeriod, ...] = ()
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = field(default=1883, metadata=rng(1, 65535))
    mqtt_topic: str = "sunrig/prices"


@dataclass(frozen=True)
class SimMarketConfig:
    enabled: bool = True
    reference_price_per_gpu_hour: float = field(default=2.30, metadata=rng(0))
    price_spread: float = field(default=0.25, metadata=rng(0, 2))
    orders_per_hour: float = field(default=1.5, metadata=rng(0, 1000))
    mean_lease_hours: float = field(default=8.0, metadata=rng(0.05))
    max_gpus_per_order: int = field(default=8, metadata=rng(1, 64))
    ask_price_per_gpu_hour: float = field(default=2.20, metadata=rng(0))
    currency_rate: float = field(default=1.0, metadata=rng(0.0001))
    seed: int = 42


@dataclass(frozen=True)
class StoragePricesConfig:
    """USD per GiB-month by Akash storage class."""

    ephemeral: float = field(default=0.02, metadata=rng(0))
    beta1: float = field(default=0.01, metadata=rng(0))  # persistent HDD
    beta2: float = field(default=0.03, metadata=rng(0))  # persistent SSD
    beta3: float = field(default=0.04, metadata=rng(0))  # persistent NVMe


@dataclass(frozen=True)
class AkashConfig:
    """Selling through the Akash provider (provider-services) running on the rig's Kubernetes."""

    enabled: bool = False
    provider_address: str = ""  # akash1...: whose leases to read
    rest_url: str = "https://api.akashnet.net"  # a chain REST (LCD) endpoint
    provider_url: str = ""  # the provider's own API, e.g. https://provider.example:8443
    provider_ca_file: str = ""  # its certificate's CA; empty: /status is read unverified
    offer_file: str = field(default="/var/lib/sunrig/akash-offer.json", metadata=rng(path=True))
    offer_valid_s: float = field(default=300.0, metadata=rng(60, 86400))
    margin_pct: float = field(default=5.0, metadata=rng(0, 1000))
    block_seconds: float = field(default=6.117, metadata=rng(0.1, 600))
    akt_usd: float = field(default=0.0, metadata=rng(0))  # only for orders still in uakt
    cpu_usd_per_core_hour: float = field(default=0.0022, metadata=rng(0))
    memory_usd_per_gib_hour: float = field(default=0.0011, metadata=rng(0))
    endpoint_usd_per_month: float = field(default=0.05, metadata=rng(0))
    ip_usd_per_month: float = field(default=5.0, metadata=rng(0))
    storage_usd_per_gib_month: StoragePricesConfig = field(default_factory=StoragePricesConfig)
    gpu_interface: Literal["sxm", "pcie"] = "sxm"
    # what the planner expects of Akash demand for this rig (USD), until lease history says more
    expected_usd_per_gpu_hour: float = field(default=2.30, metadata=rng(0))
    ask_usd_per_gpu_hour: float = field(default=1.80, metadata=rng(0))
    orders_per_hour: float = field(default=0.5, metadata=rng(0, 1000))
    price_spread: float = field(default=0.25, metadata=rng(0, 2))
    mean_lease_hours: float = field(default=24.0, metadata=rng(0.05))


@dataclass(frozen=True)
class HyperbolicConfig:
    """Supplying through HyperdOS; the owner's API key is read from `api_key_file`."""

    enabled: bool = False
    api_key_file: str = field(default="/etc/sunrig/hyperbolic.key", metadata=rng(path=True))
    base_url: str = "https://api.hyperbolic.xyz"
    state_file: str = field(default="/var/lib/sunrig/hyperbolic.json", metadata=rng(path=True))
    expected_usd_per_gpu_hour: float = field(default=2.20, metadata=rng(0))
    ask_usd_per_gpu_hour: float = field(default=1.50, metadata=rng(0))
    orders_per_hour: float = field(default=0.3, metadata=rng(0, 1000))
    price_spread: float = field(default=0.10, metadata=rng(0, 2))
    mean_lease_hours: float = field(default=12.0, metadata=rng(0.05))


@dataclass(frozen=True)
class MarketsConfig:
    usd_per_site_currency: float = field(default=1.0, metadata=rng(0.0001))  # for Akash, Hyperbolic
    sim: SimMarketConfig = field(default_factory=SimMarketConfig)
    akash: AkashConfig = field(default_factory=AkashConfig)
    hyperbolic: HyperbolicConfig = field(default_factory=HyperbolicConfig)


@dataclass(frozen=True)
class KubeConfig:
    """The GPU split on the rig's Kubernetes: hold pods keep GPUs away from the providers."""

    enabled: bool = False
    namespace: str = "sunrig"
    node_name: str = ""  # the rig's node as Kubernetes names it
    kubeconfig: str = ""  # empty: in-cluster service account, else ~/.kube/config
    hold_image: str = "registry.k8s.io/pause:3.10"


@dataclass(frozen=True)
class PlannerConfig:
    kind: Literal["milp", "rule"] = "milp"  # rule: the simple fallback, no optimisation
    solve_time_limit_s: float = field(default=5.0, metadata=rng(0.1, 120))
    horizon_hours: int = field(default=48, metadata=rng(1, 168))
    slot_minutes: Literal[15, 30, 60] = 15
    wear_per_gpu_hour: float = field(default=0.10, metadata=rng(0))
    margin_per_gpu_hour: float = field(default=0.10, metadata=rng(0))
    min_floor_per_gpu_hour: float = field(default=0.50, metadata=rng(0))


@dataclass(frozen=True)
class CapexItem:
    name: str
    amount: float = field(metadata=rng(0))
    date: str = field(metadata=rng(check=_iso_date))


@dataclass(frozen=True)
class OpexItem:
    name: str
    amount_per_month: float = field(metadata=rng(0))
    since: str = field(metadata=rng(check=_iso_date))


@dataclass(frozen=True)
class CapexConfig:
    items: tuple[CapexItem, ...] = ()
    opex: tuple[OpexItem, ...] = ()


@dataclass(frozen=True)
class TeeConfig:
    # auto: attest through NVML when the GPUs are read through NVML, never on a simulated rig
    backend: Literal["auto", "nvml", "off"] = "auto"
    attest_every_s: float = field(default=3600.0, metadata=rng(60))
    premium_pct: float = field(default=10.0, metadata=rng(0, 100))
    rims: tuple[str, ...] = field(default=(), metadata=rng(path=True))
    vcek: str = field(default="", metadata=rng(path=True))
    amd_cert_chain: str = field(default="", metadata=rng(path=True))
    configfs_tsm: str = field(default="/sys/kernel/config/tsm/report", metadata=rng(path=True))


@dataclass(frozen=True)
class WebuiConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=rng(1, 65535))
    allow_lan: bool = False


@dataclass(frozen=True)
class HomeAssistantConfig:
    """MQTT discovery, so Home Assistant's energy dashboard shows the rig."""

    enabled: bool = False
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = field(default=1883, metadata=rng(1, 65535))
    username: str = ""
    password_file: str = field(default="", metadata=rng(path=True))
    discovery_prefix: str = "homeassistant"
    node_id: str = "sunrig"
    every_s: float = field(default=30.0, metadata=rng(1, 3600))


@dataclass(frozen=True)
class StoreConfig:
    path: str = field(default="/var/lib/sunrig/sunrig.db", metadata=rng(path=True))
    raw_retention_days: float = field(default=14.0, metadata=rng(0.01))


@dataclass(frozen=True)
class AgentConfig:
    site_poll_s: float = field(default=10.0, metadata=rng(0.1))
    gpu_poll_s: float = field(default=10.0, metadata=rng(0.1))
    apply_every_s: float = field(default=60.0, metadata=rng(1))
    market_sync_s: float = field(default=60.0, metadata=rng(1))
    plan_every_s: float = field(default=900.0, metadata=rng(10))
    ledger_every_s: float = field(default=300.0, metadata=rng(10))
    maintenance_every_s: float = field(default=900.0, metadata=rng(10))


@dataclass(frozen=True)
class SimulationConfig:
    """`sunrig simulate` and the economics benchmark: the period and how often to re-plan."""

    start: str = field(default="2024-01-01", metadata=rng(check=_iso_date))
    days: int = field(default=364, metadata=rng(1, 3650))
    replan_hours: float = field(default=3.0, metadata=rng(0.25, 24))
    horizon_hours: int = field(default=36, metadata=rng(6, 168))
    slot_minutes: Literal[15, 30, 60] = 60
    hindsight_block_days: int = field(default=7, metadata=rng(1, 28))  # solved at once
    hindsight_lookahead_hours: int = field(default=12, metadata=rng(0, 168))
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
    store: StoreConfig = field(default_factory=StoreConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError naming the file and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    return parse_config(text, str(path), base_dir=path.parent)


def default_config() -> Config:
    """The embedded default: a simulated 8-GPU rig, site and market."""
    text = resources.files("node").joinpath("default.toml").read_text(encoding="utf-8")
    return parse_config(text, "<embedded default.toml>", base_dir=Path.cwd())


def parse_config(text: str, file: str, base_dir: Path) -> Config:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"not valid TOML: {exc}") from None
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
        raise ConfigError(ctx.file, prefix, "must be a table")
    allowed = [f.name for f in fields(cls)]
    for key in table:
        if key not in allowed:
            raise ConfigError(ctx.file, _join(prefix, key),
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
            raise ConfigError(ctx.file, key, f"must be a list, got {type(value).__name__}")
        item_type = get_args(tp)[0]
        return tuple(_convert(item_type, v, ctx, f"{key}[{i}]", meta) for i, v in enumerate(value))
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices or isinstance(value, bool):
            raise ConfigError(ctx.file, key, f"must be one of {', '.join(map(repr, choices))}, "
                                             f"got {value!r}")
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
        raise ConfigError(ctx.file, key, f"must be {names[tp]}, got {type(value).__name__} "
                                         f"{value!r}")
    return float(value) if tp is float else value


def _check_meta(value: Any, ctx: _Ctx, key: str, meta: Any) -> None:
    lo, hi, check = meta.get("min"), meta.get("max"), meta.get("check")
    if lo is not None and value < lo:
        raise ConfigError(ctx.file, key, f"must be at least {lo}, got {value}")
    if hi is not None and value > hi:
        raise ConfigError(ctx.file, key, f"must be at most {hi}, got {value}")
    if check is not None:
        try:
            check(value)
        except ValueError as exc:
            raise ConfigError(ctx.file, key, str(exc)) from None


def _cross_checks(cfg: Config, file: str) -> None:
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
                          f"{cfg.webui.host!r} is beyond localhost; set webui.allow_lan = true "
                          "to serve the dashboard on the LAN")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
