"""What the live agent tells the planner: prices, forecasts, battery, leases and market terms.

Forecasts come from the store's own history (the past week's same time of day); the battery from
the last site sample; how long leases last and how busy each market really is, from the leases
the store has seen. Everything here reads; nothing writes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache

from energy.forecast import ProfileForecast
from energy.price_forecast import extend
from energy.pv_forecast import Array, PvForecast, weather_ratio
from energy.pv_service import ServicePv, pv_service
from energy.types import PriceSlot, SiteSample
from market_adapter.base import ACTIVE
from node.config import BatteryConfig, Config, SiteConfig
from node.errors import ConfigError
from node.gpus import GpuSnapshot
from node.inference.value import with_local_value
from node.planning.planner import (
    BatteryState,
    FillCalibration,
    MarketTerms,
    PlanInputs,
    shortfall_price,
)
from node.storage.store import Store, epoch, from_epoch

HISTORY = timedelta(days=7)
RATIO_HISTORY = timedelta(days=3)  # the weather ratio: recent enough to carry today's sky
TYPICAL_RATIO = 0.6  # measured over clear-sky output, a mid-latitude year's average
LEASE_HISTORY = timedelta(days=30)
MIN_LEASES_FOR_MEAN = 10  # fewer closed leases than this: the configured mean lease length

log = logging.getLogger(__name__)


@dataclass
class FillTracker:
    """Per market: the offer standing since the last sync, and how the market filled it."""

    fills: dict[str, FillCalibration] = field(default_factory=dict)
    standing: dict[str, tuple[datetime, float, int]] = field(default_factory=dict)

    def offered(self, market: str, now: datetime, floor_site: float, free_gpus: int) -> None:
        self.standing[market] = (now, floor_site, free_gpus)

    def synced(self, market: str, now: datetime, terms: MarketTerms, started_gpus: int) -> None:
        """Compare the GPUs leased since the offer with what the model expected of it."""
        since = self.standing.get(market)
        if since is None or now <= since[0]:
            return
        hours = (now - since[0]).total_seconds() / 3600.0
        expected = terms.expected_gpus_started(since[1], since[2], hours)
        fill = self.fills.setdefault(market, FillCalibration.for_terms(terms))
        fill.record(expected, started_gpus, hours)
        self.standing[market] = (now, since[1], since[2])

    def factor(self, market: str) -> float:
        fill = self.fills.get(market)
        return fill.factor if fill else 1.0


def site_battery(cfg: Config) -> BatteryConfig | None:
    battery = cfg.energy.simulated.battery
    return battery if battery.capacity_kwh > 0 else None


def learned_terms(store: Store, terms: dict[str, MarketTerms], now: datetime,
                  tracker: FillTracker) -> dict[str, MarketTerms]:
    """The configured terms, with the mean lease length from closed leases where there are
    enough of them, and the demand scaled by how the market really filled."""
    out = {}
    for name, t in terms.items():
        rows = store.query(
            "SELECT started, ended FROM leases WHERE market = ? AND ended IS NOT NULL "
            "AND ended >= ?", [name, epoch(now - LEASE_HISTORY)])
        hours = [(r["ended"] - r["started"]) / 3600.0 for r in rows if r["ended"] > r["started"]]
        mean_h = sum(hours) / len(hours) if len(hours) >= MIN_LEASES_FOR_MEAN else (
            t.mean_lease_hours)
        out[name] = replace(t, mean_lease_hours=max(0.25, mean_h),
                            orders_per_hour=t.orders_per_hour * tracker.factor(name))
    return out


def plan_inputs(cfg: Config, store: Store, terms: dict[str, MarketTerms], now: datetime,
                gpus: list[GpuSnapshot], site: SiteSample | None, gpu_busy_w: float,
                reserved_at: Callable[[datetime], int]) -> PlanInputs:
    horizon = now + timedelta(hours=cfg.planner.horizon_hours)
    known = _slots(store.price_slots(now, horizon))
    history = _slots(store.price_slots(now - HISTORY, now))
    prices = extend(known, history, horizon, store.tz)  # beyond the published day: a forecast
    rows = store.query("SELECT ts, pv_w, load_w FROM site_samples WHERE stale = 0 AND ts >= ?",
                       [epoch(now - HISTORY)])
    pv = _pv_forecast(cfg, rows, now) or ProfileForecast.from_rows(
        ((r["ts"], r["pv_w"]) for r in rows), store.tz)
    load = ProfileForecast.from_rows(((r["ts"], r["load_w"]) for r in rows), store.tz)
    pv_now = (site.pv_w or 0.0) if site else 0.0
    load_now = (site.load_w or 0.0) if site else 0.0
    soon = now + timedelta(minutes=cfg.planner.slot_minutes)

    def forecast(profile: ProfileForecast | PvForecast, measured: float
                 ) -> Callable[[datetime], float]:
        def value(ts: datetime) -> float:
            if ts < soon:  # the slot under way: what the meters say now
                return measured
            guess = profile.at(ts)
            return measured if guess is None else guess
        return value

    return PlanInputs(
        gpu_count=len(gpus), local_gpus_at=reserved_at, prices=prices, markets=terms,
        gpu_busy_w=gpu_busy_w,
        gpu_min_limit_w=min((s.power_limit_min_w for s in gpus if s.power_limit_min_w),
                            default=None),
        host_overhead_w=cfg.site.host_overhead_w, cooling_factor=cfg.site.cooling_factor,
        breaker_limit_w=cfg.site.breaker_limit_w, house_load_w=load_now,
        exporting_now=bool(site and site.grid_w is not None and site.grid_w < 0),
        wear_per_gpu_hour=cfg.planner.wear_per_gpu_hour,
        margin_per_gpu_hour=cfg.planner.margin_per_gpu_hour,
        min_floor_per_gpu_hour=cfg.planner.min_floor_per_gpu_hour,
        expected_lease_hours=cfg.markets.sim.mean_lease_hours,
        pv_w_at=forecast(pv, pv_now), house_w_at=forecast(load, load_now),
        battery=_battery(cfg, site), leased_gpus_at=_leases_running(store, terms, now),
        shortfall_per_gpu_hour=with_local_value(shortfall_price(cfg.local.reservation, terms),
                                                store, now))


def _slots(rows: list[dict]) -> list[PriceSlot]:
    return [PriceSlot(from_epoch(r["start"]), from_epoch(r["end"]), r["import_per_kwh"],
                      r["export_per_kwh"]) for r in rows]


def site_array(cfg: Config) -> Array | None:
    """The PV array the forecast sees: configured, or the simulated one."""
    s = cfg.site
    kwp = s.pv_kwp or (cfg.energy.simulated.pv_array_kwp if cfg.energy.source == "simulated"
                       else 0.0)
    if kwp <= 0:
        return None
    return Array(s.latitude, s.longitude, kwp, s.pv_tilt_deg, s.pv_azimuth_deg)


def _pv_forecast(cfg: Config, rows: list[dict], now: datetime) -> PvForecast | None:
    """Clear sky on the array times the last three days' weather ratio where the array is
    known (a typical ratio until daylight has been measured); where a forecast service is
    configured, its values times their own measured ratio, the clear sky standing in for the
    slots it has no value for."""
    array = site_array(cfg)
    if array is None:
        return None
    recent = [(from_epoch(r["ts"]), r["pv_w"]) for r in rows
              if r["ts"] >= epoch(now - RATIO_HISTORY) and r["pv_w"] is not None]
    recent = recent[::max(1, len(recent) // 600)]  # about 600 samples
    ratio = weather_ratio(array, recent)
    if ratio is None:  # no daylight seen yet (a first start at night): a typical sky
        ratio = TYPICAL_RATIO
    start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    service = _pv_service(cfg.site, array)
    if service is None:
        return PvForecast(array, ratio, start, cfg.planner.horizon_hours + 1)
    service.refresh(now)
    return PvForecast(array, ratio, start, cfg.planner.horizon_hours + 1, service=service.at,
                      service_ratio=service.ratio(recent) or 1.0)


def _pv_service(site: SiteConfig, array: Array) -> ServicePv | None:
    if site.pv_forecast == "clear_sky":
        return None
    return _service(site.pv_forecast, array, site.pv_forecast_api_key_file,
                    site.pv_forecast_refresh_s)


@lru_cache(maxsize=4)  # one per configured array and service: it keeps what it fetched
def _service(kind: str, array: Array, key_file: str, refresh_s: float) -> ServicePv | None:
    from node.wiring import read_secret  # the one secret reader; wiring imports this module

    key = ""
    if key_file:
        try:
            key = read_secret(key_file, "site.pv_forecast_api_key_file", "the forecast API key")
        except ConfigError as exc:  # the plan goes on with the clear sky
            log.warning("PV forecast service not used: %s", exc)
            return None
    return pv_service(kind, array, key, refresh_s)


def _battery(cfg: Config, site: SiteSample | None) -> BatteryState | None:
    bat = site_battery(cfg)
    if bat is None:
        return None
    cap_wh = bat.capacity_kwh * 1000.0
    soc_pct = site.soc_pct if site and site.soc_pct is not None else bat.min_soc_pct
    return BatteryState(cap_wh, cap_wh * soc_pct / 100.0, cap_wh * bat.min_soc_pct / 100.0,
                        bat.max_charge_w, bat.max_discharge_w)


def _leases_running(store: Store, terms: dict[str, MarketTerms], now: datetime
                    ) -> Callable[[str, datetime], float]:
    """GPUs that running leases are expected to hold at a time: lease lengths are memoryless,
    so each lease still runs with probability exp(-t / mean)."""
    held: dict[str, int] = {}
    for r in store.leases(ACTIVE):
        held[r["market"]] = held.get(r["market"], 0) + int(r["gpus"])

    def at(market: str, ts: datetime) -> float:
        t = terms.get(market)
        hours = max(0.0, (ts - now).total_seconds() / 3600.0)
        mean_h = t.mean_lease_hours if t else 8.0
        return held.get(market, 0) * math.exp(-hours / mean_h)
    return at
