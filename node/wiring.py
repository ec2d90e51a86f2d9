"""Build the agent's parts from a Config: the one place that picks real or simulated drivers."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from energy import redact
from energy.files import FileProblem, read_text, tls_client_context
from energy.modbus import ModbusHub, SunSpecSite
from energy.mqtt import Mapping, MqttSettings, MqttSite
from energy.mqtt_tariff import MqttTariff
from energy.plausible import SiteLimits
from energy.price_feeds import FeedTariff, awattar, entsoe
from energy.register_maps import MAPS, RegisterMapSite
from energy.series import EMBEDDED_PREFIX, SeriesError
from energy.sim import BatterySpec, SimulatedSite
from energy.sunspec_sim import SunSpecSimServer
from energy.tariff import DayAheadTariff, FixedTariff, TimeOfUseTariff, TouWindow
from energy.types import SiteReader, Tariff
from market_adapter.akash import AkashChain, AkashMarket, AkashPrices, AkashProvider
from market_adapter.akash_bid import AkashShare, price_request
from market_adapter.akash_bid_server import (
    BidServer,
    check_token,
    check_token_file_mode,
    ensure_token_file,
    parse_listen,
)
from market_adapter.base import Market
from market_adapter.hyperbolic import HyperbolicClient, HyperbolicMarket, gpu_model_key
from market_adapter.sim import ORDER_SIZE_WEIGHTS, ORDER_SIZES, SimMarket, SimMarketSettings
from node.attest import trust_from_config
from node.clock import Clock
from node.cluster.kube import KubeSplit, api_client
from node.cluster.podresources import PodResources
from node.config import UNPRINTABLE, WEEKDAYS, Config, KubeConfig
from node.errors import ConfigError
from node.gpus import GpuBackend, NvmlBackend, SimulatedGpuModel, SimulatedRig
from node.planning.inputs import site_array, site_battery
from node.planning.planner import MarketTerms
from node.powercap.client import client_for
from node.tee_gate import TeeGate, host_preflight
from tee.attest import TeeSource
from tee.evidence import TeeError
from tee.gpu import NvmlTee
from tee.verify import Trust

log = logging.getLogger(__name__)

# A GPU under sustained inference or training load draws close to its power limit.
BUSY_SHARE_OF_LIMIT = 0.93
# an API key, token or password is at most a few KiB (a JWT with many claims)
MAX_SECRET_BYTES = 64 << 10


@dataclass
class Parts:
    backend: GpuBackend
    site: SiteReader | None  # None: no site source configured ([energy] source = "none")
    tariff: Tariff
    markets: dict[str, Market]
    terms: dict[str, MarketTerms]  # what the planner expects of each market, site currency
    gpu_model: str
    gpu_busy_w: float
    tee: TeeSource | None = None  # None: this rig cannot attest (simulated, or no CC driver)
    trust: Trust | None = None
    kube: KubeSplit | None = None  # None: no Kubernetes split (the demo, a rig without k8s)
    # the plan's Akash GPUs for its bid endpoint; None: Akash is not enabled
    akash_share: AkashShare | None = None
    # the confidential-computing preflight's gate on tee/type; None: never advertised
    tee_gate: TeeGate | None = None
    close: Callable[[], None] = lambda: None  # release what the parts hold (servers, links)


def build_parts(cfg: Config, clock: Clock, state_dir: Path,
                rig_power_w: Callable[[], float]) -> Parts:
    backend, model, busy_w = _backend(cfg, clock)
    markets, terms = _markets(cfg, clock, state_dir, model)
    k = cfg.kube
    kube = _kube(cfg.kube) if k.enabled else None
    site, close_site = _site(cfg, clock, rig_power_w)
    return Parts(backend, site, tariff_for(cfg), markets, terms, model, busy_w,
                 tee=_tee(cfg), trust=trust_from_config(cfg.tee), kube=kube, close=close_site,
                 akash_share=AkashShare() if "akash" in markets else None,
                 tee_gate=_tee_gate(cfg))


def _tee_gate(cfg: Config) -> TeeGate | None:
    """The host preflight's gate where the rig could sell confidential GPUs: real GPUs and TEE
    not switched off; a simulated rig never advertises TEE."""
    if cfg.tee.backend == "off" or cfg.gpus.backend != "nvml":
        return None
    return TeeGate(host_preflight(cfg))


def _kube(k: KubeConfig) -> KubeSplit:
    """The split on Kubernetes; PodResources tells it which pod holds which GPU, where the
    kubelet's socket is configured."""
    pods = PodResources(k.pod_resources_socket) if k.pod_resources_socket else None
    return KubeSplit(api_client(k.kubeconfig or None), k.namespace, k.node_name, k.hold_image,
                     pod_resources=pods, hyperbolic_namespaces=k.hyperbolic_namespaces,
                     local_namespaces=k.local_namespaces, grace_s=k.hold_grace_s)


def build_inventory(cfg: Config) -> tuple[str, float]:
    """The rig's GPU model key and memory (GiB), as the backend reports them."""
    if cfg.gpus.backend == "nvml":
        snaps = NvmlBackend().snapshots(datetime.now(UTC))
        if not snaps:
            return "unknown", 0.0
        return model_key(snaps[0].name), (snaps[0].memory_total_bytes or 0) / 2**30
    return cfg.gpus.simulated.model, cfg.gpus.simulated.memory_gib


def tee_source(cfg: Config) -> TeeSource | None:
    return _tee(cfg)


def _tee(cfg: Config) -> TeeSource | None:
    wanted = cfg.tee.backend
    if wanted == "off" or (wanted == "auto" and cfg.gpus.backend != "nvml"):
        return None
    try:
        return NvmlTee()
    except TeeError as exc:
        if wanted == "nvml":
            raise
        log.warning("confidential computing not available: %s", exc)
        return None


def _backend(cfg: Config, clock: Clock) -> tuple[GpuBackend, str, float]:
    if cfg.gpus.backend == "nvml":
        backend = NvmlBackend(client_for(cfg.gpus.powercap_socket))
        snaps = backend.snapshots(clock.now())
        if not snaps:
            return backend, "unknown", 0.0
        limit_w = snaps[0].power_limit_default_w or snaps[0].power_limit_w or 0.0
        return backend, model_key(snaps[0].name), limit_w * BUSY_SHARE_OF_LIMIT
    sim = cfg.gpus.simulated
    model = SimulatedGpuModel(sim.name, sim.memory_gib, sim.idle_w, sim.busy_w,
                              sim.power_limit_w, sim.min_power_limit_w)
    return SimulatedRig(sim.count, model, sim.seed), sim.model, sim.busy_w


def _site(cfg: Config, clock: Clock, rig_power_w: Callable[[], float]
          ) -> tuple[SiteReader | None, Callable[[], None]]:
    """The site reader, and what to call to release it; none where no source is configured,
    rather than a stand-in whose values would be taken for the site's."""
    if cfg.energy.source == "none":
        return None, lambda: None
    limits = site_limits(cfg)
    if cfg.energy.source == "modbus":
        return _modbus_site(cfg, rig_power_w, limits)
    if cfg.energy.source == "mqtt":
        return _mqtt_site(cfg, limits)
    sim = cfg.energy.simulated
    bat = sim.battery
    battery = None if bat.capacity_kwh <= 0 else BatterySpec(
        bat.capacity_kwh, bat.max_charge_w, bat.max_discharge_w, bat.min_soc_pct)
    site = SimulatedSite(sim.data_file, sim.pv_array_kwp / sim.trace_array_kwp, battery,
                         bat.initial_soc_pct, rig_power_w, limits=limits)
    if not sim.serve_modbus:
        return site, lambda: None
    server = SunSpecSimServer(site, clock.now, port=sim.modbus_port).start()
    hub = ModbusHub()
    reader = SunSpecSite(hub.link("127.0.0.1", server.port), rig_power_w=rig_power_w,
                         limits=limits)

    def close() -> None:
        hub.close()
        server.stop()
    return reader, close


def site_limits(cfg: Config) -> SiteLimits:
    """What the site's values can plausibly be: its connection, and the array and battery the
    planner is told about (each bounded by the connection where the config leaves it out)."""
    array, battery = site_array(cfg), site_battery(cfg)
    return SiteLimits.for_site(
        cfg.site.breaker_limit_w, array.kwp * 1000.0 if array else 0.0,
        max(battery.max_charge_w, battery.max_discharge_w) if battery else 0.0)


def _modbus_site(cfg: Config, rig_power_w: Callable[[], float], limits: SiteLimits
                 ) -> tuple[SiteReader, Callable[[], None]]:
    m = cfg.energy.modbus
    hub = ModbusHub(timeout_s=m.timeout_s)
    link = hub.link(m.host, m.port)
    if m.map:
        return RegisterMapSite(link, MAPS[m.map], m.units[0] if m.units != (1,) else None,
                               rig_power_w, limits), hub.close
    return SunSpecSite(link, m.units, m.meter_import_positive, m.battery_charge_positive,
                       rig_power_w, limits), hub.close


def _mqtt_site(cfg: Config, limits: SiteLimits) -> tuple[SiteReader, Callable[[], None]]:
    q = cfg.energy.mqtt
    password = read_secret(q.password_file, "energy.mqtt.password_file",
                       "the MQTT password") if q.password_file else ""
    site = MqttSite(MqttSettings(
        q.host, q.port, q.username, password,
        ca_file(q.tls_ca_file, "energy.mqtt.tls_ca_file") if q.tls_ca_file else "",
        client_id="sunrig",
        victron_portal=q.victron_portal,
        mappings=[Mapping(m.topic, m.field, m.json_path, m.scale, m.timeout_s)
                  for m in q.mappings]), limits=limits).start()
    return site, site.stop


def tariff_for(cfg: Config) -> Tariff:
    t = cfg.tariff
    if t.kind == "fixed":
        return FixedTariff(t.import_per_kwh, t.export_per_kwh)
    if t.kind == "time_of_use":
        windows = [TouWindow(frozenset(WEEKDAYS.index(d) for d in p.days), p.start, p.end,
                             p.import_per_kwh, p.export_per_kwh) for p in t.periods]
        return TimeOfUseTariff(t.import_per_kwh, t.export_per_kwh, windows,
                               ZoneInfo(cfg.site.timezone))
    if t.kind == "mqtt":
        return MqttTariff(t.mqtt_host, t.mqtt_port, t.mqtt_topic, t.import_formula,
                          t.export_formula).start()
    if t.kind == "awattar":
        return FeedTariff(awattar(t.awattar_country), t.import_formula, t.export_formula,
                          "aWATTar")
    if t.kind == "entsoe":
        token = read_secret(t.entsoe_token_file, "tariff.entsoe_token_file", "the ENTSO-E token")
        return FeedTariff(entsoe(token, t.entsoe_zone), t.import_formula, t.export_formula,
                          "ENTSO-E")
    return DayAheadTariff(t.prices_file, t.import_formula, t.export_formula, replay=t.replay)


def _markets(cfg: Config, clock: Clock, state_dir: Path, model: str
             ) -> tuple[dict[str, Market], dict[str, MarketTerms]]:
    markets: dict[str, Market] = {}
    terms: dict[str, MarketTerms] = {}
    s = cfg.markets.sim
    if s.enabled:
        settings = SimMarketSettings(s.reference_price_per_gpu_hour, s.price_spread,
                                     s.orders_per_hour, s.mean_lease_hours, s.max_gpus_per_order,
                                     model, s.seed, s.currency_rate)
        markets["sim"] = SimMarket(settings, clock.now, state_dir / "sim-market.json")
        terms["sim"] = sim_terms(cfg)
    site_per_usd = 1.0 / cfg.markets.usd_per_site_currency
    h = cfg.markets.hyperbolic
    # what the rig earns of a price: Hyperbolic's listed prices lose its platform fee
    for name, m, share in (("akash", cfg.markets.akash, 1.0),
                           ("hyperbolic", h, 1.0 - h.platform_fee_pct / 100.0)):
        if m.enabled:
            markets[name] = (akash_market(cfg, clock) if name == "akash"
                             else hyperbolic_market(cfg, clock))
            terms[name] = MarketTerms(m.expected_usd_per_gpu_hour * share * site_per_usd,
                                      m.ask_usd_per_gpu_hour * share * site_per_usd,
                                      m.orders_per_hour, 1.0, m.price_spread, m.mean_lease_hours)
    return markets, terms


def read_secret(path: str, key: str, what: str) -> str:
    """A token kept in its own file (readable by sunrig only), not in the config. Every secret
    sunrig holds is read here and registered, so no log, event or error ever shows it."""
    try:
        text = read_text(path, MAX_SECRET_BYTES).strip()
    except FileProblem as exc:
        raise ConfigError("config", key, f"cannot read {what}: {exc}") from None
    if not text:
        raise ConfigError("config", key, f"{what} file {path}: is empty")
    redact.register(text)  # before any check that could quote it
    bad = next((i for i, ch in enumerate(text) if unicodedata.category(ch) in UNPRINTABLE), None)
    if bad is not None:  # it would go into a header or a login as it is; say where, not what
        raise ConfigError("config", key, f"{what} file {path}: holds a line break or control "
                                         f"character (character {bad + 1}); a token is one line")
    return text


def ca_file(path: str, key: str) -> str:
    """A CA file the config names, checked when sunrig starts: one that is missing, a folder,
    binary or no PEM certificate is a ConfigError naming the key, not an ssl error later."""
    try:
        tls_client_context(path)
    except FileProblem as exc:
        raise ConfigError("config", key, str(exc)) from None
    return path


def hyperbolic_market(cfg: Config, clock: Clock) -> HyperbolicMarket:
    h = cfg.markets.hyperbolic
    key = read_secret(h.api_key_file, "markets.hyperbolic.api_key_file", "the API key")
    return HyperbolicMarket(HyperbolicClient(key, h.base_url), h.state_file, clock.now,
                            1.0 / cfg.markets.usd_per_site_currency,
                            platform_fee_pct=h.platform_fee_pct)


def akash_market(cfg: Config, clock: Clock) -> AkashMarket:
    a = cfg.markets.akash
    s = a.storage_usd_per_gib_month
    prices = AkashPrices(a.cpu_usd_per_core_hour, a.memory_usd_per_gib_hour,
                         (("ephemeral", s.ephemeral), ("beta1", s.beta1), ("beta2", s.beta2),
                          ("beta3", s.beta3)), a.endpoint_usd_per_month, a.ip_usd_per_month,
                         a.margin_pct, a.block_seconds, a.akt_usd)
    chain = AkashChain(a.rest_url, a.provider_address, a.block_seconds, a.akt_usd)
    ca = ca_file(a.provider_ca_file, "markets.akash.provider_ca_file") \
        if a.provider_ca_file else None
    provider = AkashProvider(a.provider_url, a.provider_address, ca) if a.provider_url else None
    return AkashMarket(chain, a.offer_file, prices, 1.0 / cfg.markets.usd_per_site_currency,
                       clock.now, a.offer_valid_s, provider=provider,
                       gpu_interface=a.gpu_interface, gpu_ram=a.gpu_ram)


def akash_bid_token(cfg: Config, create: bool = False) -> str:
    """The bid endpoint's token from its file (created, 0600, when `create` and missing), read
    as every secret is so that nothing ever shows it."""
    path, key = cfg.markets.akash.bid_token_file, "markets.akash.bid_token_file"
    try:
        if create:
            ensure_token_file(path)
        check_token_file_mode(path)
    except FileNotFoundError:
        raise ConfigError("config", key, f"{path} does not exist yet: the agent creates it when "
                                         "it starts with Akash enabled") from None
    except OSError as exc:
        raise ConfigError("config", key, f"cannot create or read {path}: {exc.strerror}"
                          ) from None
    except ValueError as exc:
        raise ConfigError("config", key, str(exc)) from None
    token = read_secret(path, key, "the bid token")
    try:
        return check_token(token)
    except ValueError as exc:
        raise ConfigError("config", key, str(exc)) from None


def akash_bid_server(cfg: Config, market: AkashMarket, share: AkashShare | None = None
                     ) -> BidServer:
    """The bid endpoint for the provider's bid-price script, pricing from the market's current
    offer within Akash's `share` of the plan; started by the caller, stopped with the agent."""
    a = cfg.markets.akash
    token = akash_bid_token(cfg, create=True)
    try:
        host, port = parse_listen(a.bid_listen, a.bid_listen_any)
    except ValueError as exc:
        raise ConfigError("config", "markets.akash.bid_listen", str(exc)) from None
    try:
        return BidServer(host, port, token, lambda body: price_request(
            body, market.current_offer, market.now(), share), a.bid_listen_any)
    except OSError as exc:
        raise ConfigError("config", "markets.akash.bid_listen",
                          f"cannot listen on {a.bid_listen}: {exc.strerror}") from None


def sim_terms(cfg: Config) -> MarketTerms:
    """What the planner expects of the simulated market, in site currency."""
    s = cfg.markets.sim
    sizes = [(n, w) for n, w in zip(ORDER_SIZES, ORDER_SIZE_WEIGHTS, strict=True)
             if n <= s.max_gpus_per_order] or [(1, 1.0)]
    mean_gpus = sum(n * w for n, w in sizes) / sum(w for _, w in sizes)
    return MarketTerms(s.reference_price_per_gpu_hour * s.currency_rate,
                       s.ask_price_per_gpu_hour * s.currency_rate, s.orders_per_hour, mean_gpus,
                       s.price_spread, s.mean_lease_hours, tuple(sizes))


# --- what a config would run with, for `sunrig config check` and `sunrig run` -------------------

@dataclass(frozen=True)
class PartUse:
    """One part the agent would run with, and whether it is simulated; a simulated part only
    runs in `sunrig run` where the config sets `allow_key` = true."""

    role: str  # GPUs, site, tariff, market
    name: str
    simulated: bool = False
    allow_key: str = ""
    allowed: bool = True


def parts_used(cfg: Config) -> list[PartUse]:
    """Every part the agent would build from `cfg`, named as the owner would recognise it."""
    g, e, m = cfg.gpus, cfg.energy, cfg.markets
    parts = [PartUse("GPUs", "NVML (the real GPUs)") if g.backend == "nvml" else
             PartUse("GPUs", f"simulated rig of {g.simulated.count} x {g.simulated.name}", True,
                     "gpus.allow_simulated", g.allow_simulated)]
    if e.source == "modbus":
        how = f"register map {e.modbus.map}" if e.modbus.map else "SunSpec"
        parts.append(PartUse("site", f"Modbus TCP {e.modbus.host}:{e.modbus.port} ({how})"))
    elif e.source == "mqtt":
        parts.append(PartUse("site", f"MQTT {e.mqtt.host}:{e.mqtt.port}, "
                                     f"{len(e.mqtt.mappings)} topic(s)"))
    elif e.source == "none":
        parts.append(PartUse("site", "none: no site readings, the rig's energy is booked at the "
                                     "grid price"))
    else:
        parts.append(PartUse("site", f"simulated household from {e.simulated.data_file}", True,
                             "energy.allow_simulated", e.allow_simulated))
    parts.append(_tariff_use(cfg))
    if m.sim.enabled:
        parts.append(PartUse("market", "simulated market (seeded orders, no real tenant)", True,
                             "markets.sim.allow_simulated", m.sim.allow_simulated))
    if m.akash.enabled:
        parts.append(PartUse("market", f"Akash, provider {m.akash.provider_address}"))
    if m.hyperbolic.enabled:
        parts.append(PartUse("market", f"Hyperbolic at {m.hyperbolic.base_url}"))
    return parts


def _tariff_use(cfg: Config) -> PartUse:
    t = cfg.tariff
    names = {"fixed": "fixed prices", "time_of_use": "time-of-use prices",
             "awattar": f"aWATTar day-ahead prices ({t.awattar_country})",
             "entsoe": f"ENTSO-E day-ahead prices ({t.entsoe_zone})",
             "mqtt": f"prices on MQTT {t.mqtt_host}:{t.mqtt_port} {t.mqtt_topic}"}
    if t.kind != "day_ahead":
        return PartUse("tariff", names[t.kind])
    if t.replay:  # a recorded year stands for this one: a warning, not a refusal
        return PartUse("tariff", f"day-ahead prices from {t.prices_file}, a recorded year "
                                 "replayed", True)
    return PartUse("tariff", f"day-ahead prices from {t.prices_file}")


def refuse_simulated(cfg: Config, file: str) -> None:
    """`sunrig run` books real money: a simulated part it was not allowed is a ConfigError
    naming the key that allows it."""
    refused = [p for p in parts_used(cfg) if p.simulated and p.allow_key and not p.allowed]
    if refused:
        raise ConfigError(file, refused[0].allow_key, "; ".join(
            f"the {p.role} would be simulated ({p.name}): set {p.allow_key} = true to run "
            "it anyway" for p in refused) + ", or use `sunrig demo`")


def still_needs(cfg: Config) -> list[str]:
    """What the owner has still to configure for the rig to do its job, as plain sentences:
    `sunrig config check` prints them, the agent logs them at its start and the Overview shows
    them. A starter config runs without these, with no simulated part standing in."""
    needs = []
    if cfg.energy.source == "none":
        needs.append('A site source: set [energy] source = "modbus" or "mqtt". Until then there '
                     "are no solar, battery or grid readings, and the rig's energy is booked at "
                     "the grid price.")
    t = cfg.tariff
    if t.kind == "day_ahead" and t.prices_file.startswith(EMBEDDED_PREFIX) and not t.replay:
        needs.append(f"Your tariff: set [tariff] to your supplier's prices. Until then the "
                     f"recorded sample {t.prices_file} stands in, and any hour it does not "
                     "cover goes unpriced.")
    m = cfg.markets
    if not (m.sim.enabled or m.akash.enabled or m.hyperbolic.enabled):
        needs.append("A market: enable [markets.akash] or [markets.hyperbolic]. Until then no "
                     "GPU is offered for rent.")
    if not cfg.capex.items:
        needs.append("What the rig cost: add [[capex.items]], so the payback can be worked out.")
    return needs


def config_file_problems(cfg: Config, file: str) -> list[ConfigError]:
    """Every file the config names that the agent would read (tokens, CA files, series, TEE
    trust files), each read as the agent reads it; a problem per key."""
    problems = []
    for key, check in _file_checks(cfg):
        try:
            check()
        except ConfigError as exc:
            problems.append(ConfigError(file, exc.key or key, exc.problem))
        except SeriesError as exc:
            problems.append(ConfigError(file, key, str(exc)))
    return problems


def _file_checks(cfg: Config) -> list[tuple[str, Callable[[], object]]]:
    e, t, m, h, tee = cfg.energy, cfg.tariff, cfg.markets, cfg.homeassistant, cfg.tee
    checks: list[tuple[str, Callable[[], object]]] = []

    def secret(key: str, path: str, what: str) -> None:
        checks.append((key, lambda: read_secret(path, key, what)))

    if e.source == "simulated":
        checks.append(("energy.simulated.data_file",
                       lambda: SimulatedSite(e.simulated.data_file)))
    if e.source == "mqtt" and e.mqtt.password_file:
        secret("energy.mqtt.password_file", e.mqtt.password_file, "the MQTT password")
    if e.source == "mqtt" and e.mqtt.tls_ca_file:
        checks.append(("energy.mqtt.tls_ca_file",
                       lambda: ca_file(e.mqtt.tls_ca_file, "energy.mqtt.tls_ca_file")))
    if t.kind == "day_ahead":
        checks.append(("tariff.prices_file", lambda: DayAheadTariff(
            t.prices_file, t.import_formula, t.export_formula, replay=t.replay)))
    if t.kind == "entsoe":
        secret("tariff.entsoe_token_file", t.entsoe_token_file, "the ENTSO-E token")
    if m.hyperbolic.enabled:
        secret("markets.hyperbolic.api_key_file", m.hyperbolic.api_key_file, "the API key")
    if m.akash.enabled and m.akash.provider_ca_file:
        checks.append(("markets.akash.provider_ca_file", lambda: ca_file(
            m.akash.provider_ca_file, "markets.akash.provider_ca_file")))
    if h.enabled and h.password_file:
        secret("homeassistant.password_file", h.password_file, "the MQTT password")
    if cfg.site.pv_forecast == "forecast_solar" and cfg.site.pv_forecast_api_key_file:
        secret("site.pv_forecast_api_key_file", cfg.site.pv_forecast_api_key_file,
               "the forecast API key")
    # each kind of trust file on its own, so a broken RIM does not hide a broken VCEK
    for key, only in (("tee.rims", replace(tee, vcek="", amd_cert_chain="")),
                      ("tee.vcek", replace(tee, rims=(), amd_cert_chain="")),
                      ("tee.amd_cert_chain", replace(tee, rims=(), vcek=""))):
        checks.append((key, lambda only=only: trust_from_config(only)))
    return checks


def model_key(gpu_name: str) -> str:
    """'NVIDIA H200' -> 'h200', 'NVIDIA H100 80GB HBM3' -> 'h100': the rule the markets' names
    are read by too, so the rig's GPUs find their price."""
    return gpu_model_key(gpu_name) or "unknown"

