"""Prometheus metrics (`/metrics`) from the agent's status, read at each scrape.

A registry per app and a collector over the status function: nothing is cached between scrapes,
so what Prometheus sees is what the dashboard shows. No secret is ever a metric or a label.

Names follow Prometheus's naming practice (https://prometheus.io/docs/practices/naming/): base
units in the name (watts, joules, celsius, seconds, bytes, ratios from 0 to 1), `_total` on
counters, `_info` on the metadata series. Counters are the lifetime totals of the store (the
status's `lifetime`, from `node.books.totals`), never counts kept in this process, so they never go
down, not even across a restart, and `rate()` and `increase()` work over any window.
Money has no base unit: it is in the site's configured currency, carried by a `currency` label
rather than the name, so names stay fixed in code (dashboards and alert rules work on every
rig) while an aggregation that would add euros to dollars stays visible (`sum by (currency)`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from node.books.totals import ERROR_STATUS
from node.roles import LOCAL, MARKET, PARKED

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROLES = (LOCAL, MARKET, PARKED)
JOULES_PER_WH = 3600.0


class StatusCollector(Collector):
    def __init__(self, status: Callable[[], dict[str, Any]]):
        self.status = status

    def collect(self) -> Iterator[Metric]:
        s = self.status()
        cur = s.get("currency", "")
        yield _build_info()
        yield _gauge("sunrig_rig_power_watts", "The rig's draw, cooling included", s.get(
            "rig_power_w"))
        roles = GaugeMetricFamily("sunrig_gpus", "GPUs by role", labels=["role"])
        for role, n in (s.get("roles") or {}).items():
            roles.add_metric([role], n)
        yield roles
        yield from _site(s.get("site") or {})
        yield from _today(s.get("today") or {}, cur)
        yield from _payback_and_prices(s, cur)
        yield from _plan(s.get("plan") or {}, cur)
        jobs = GaugeMetricFamily("sunrig_job_ok", "1 while a job's last run succeeded",
                                 labels=["job"])
        for name, job in (s.get("jobs") or {}).items():
            jobs.add_metric([name], 1.0 if job.get("ok") else 0.0)
        yield jobs
        yield _gauge("sunrig_tee_advertised", "1 while attested TEE capacity is offered",
                     1.0 if (s.get("tee") or {}).get("advertised") else 0.0)
        yield from _gpus(s.get("gpus") or [])
        yield from _leases(s.get("leases") or [])
        lifetime = s.get("lifetime") or {}
        yield from _lifetime_books(lifetime, cur)
        yield from _inference(lifetime.get("inference") or {})


def running_version() -> str:
    """The installed sunrig's version, as Prometheus and Home Assistant are told it."""
    try:
        return version("sunrig")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _build_info() -> Metric:
    info = InfoMetricFamily("sunrig_build", "The running sunrig's version")
    info.add_metric([], {"version": running_version()})
    return info


def _site(site: dict[str, Any]) -> Iterator[Metric]:
    flows = GaugeMetricFamily("sunrig_site_power_watts", "Site power: pv, house load, grid "
                              "(+ importing), battery (+ charging)", labels=["flow"])
    for flow in ("pv", "load", "grid", "battery"):
        if site.get(f"{flow}_w") is not None:
            flows.add_metric([flow], site[f"{flow}_w"])
    yield flows
    soc = site.get("soc_pct")
    yield _gauge("sunrig_battery_soc_ratio", "Battery state of charge, 0 to 1",
                 None if soc is None else soc / 100.0)
    yield _gauge("sunrig_source_stale", "1 while the site source gives no fresh reading",
                 1.0 if (not site or site.get("stale")) else 0.0, ["source"], ["site"])
    rejected = GaugeMetricFamily("sunrig_site_rejected_values", "Site values turned away "
                                 "since the start: outside the site's limits (implausible, "
                                 "by field) or unparsable (malformed, by topic)",
                                 labels=["kind", "name"])
    for kind, counts in (site.get("rejected") or {}).items():
        for name, n in counts.items():
            rejected.add_metric([kind, name], n)
    yield rejected


def _today(today: dict[str, Any], cur: str) -> Iterator[Metric]:
    """Today's figures as the dashboard shows them; they start again at local midnight, so
    rates are taken from the lifetime counters instead."""
    by_source = GaugeMetricFamily("sunrig_rig_energy_today_kwh", "The rig's energy today by "
                                  "its source at the time: pv, battery, grid (see "
                                  "sunrig_rig_energy_joules_total for rates)", labels=["source"])
    for source, kwh in (today.get("energy_kwh_by_source") or {}).items():
        by_source.add_metric([source], kwh)
    yield by_source
    yield _gauge("sunrig_revenue_today", "Revenue booked today (see sunrig_revenue_total for "
                 "rates)", today.get("revenue"), ["currency"], [cur])
    yield _gauge("sunrig_energy_cost_today", "The rig's energy cost today",
                 today.get("energy_cost"), ["currency"], [cur])


def _payback_and_prices(s: dict[str, Any], cur: str) -> Iterator[Metric]:
    payback = s.get("payback") or {}
    yield _gauge("sunrig_net_to_date", "Net cash flow since the first CapEx item",
                 payback.get("net_to_date"), ["currency"], [cur])
    yield _gauge("sunrig_paid_back_ratio", "Share of the CapEx paid back",
                 None if payback.get("paid_back_pct") is None
                 else payback["paid_back_pct"] / 100.0)
    price = s.get("price") or {}
    yield _gauge("sunrig_import_price_per_kwh", "Import price now",
                 price.get("import_per_kwh"), ["currency"], [cur])
    yield _gauge("sunrig_export_price_per_kwh", "Feed-in price now",
                 price.get("export_per_kwh"), ["currency"], [cur])


def _plan(plan: dict[str, Any], cur: str) -> Iterator[Metric]:
    offered = GaugeMetricFamily("sunrig_gpus_offered", "GPUs in the market role per market",
                                labels=["market"])
    floors = GaugeMetricFamily("sunrig_floor_per_gpu_hour", "Floor price per GPU-hour",
                               labels=["market", "currency"])
    for market, n in (plan.get("offered") or {}).items():
        offered.add_metric([market], n)
    for market, f in (plan.get("floor_per_gpu_hour") or {}).items():
        floors.add_metric([market, cur], f)
    yield offered
    yield floors


# per GPU: (metric, help, status field, divisor to the base unit)
GPU_GAUGES = (
    ("sunrig_gpu_power_watts", "The GPU's power draw", "power_w", 1),
    ("sunrig_gpu_power_limit_watts", "The GPU's power limit", "power_limit_w", 1),
    ("sunrig_gpu_utilization_ratio", "The GPU's utilisation, 0 to 1", "util_pct", 100),
    ("sunrig_gpu_temperature_celsius", "The GPU's temperature", "temp_c", 1),
    ("sunrig_gpu_memory_used_bytes", "The GPU's memory in use", "memory_used_bytes", 1))


def _gpus(gpus: list[dict[str, Any]]) -> Iterator[Metric]:
    """Per GPU by its index (`gpu`); its UUID and model are on `sunrig_gpu_info`, to join on."""
    info = InfoMetricFamily("sunrig_gpu", "Each GPU's UUID and model", labels=["gpu"])
    role = GaugeMetricFamily("sunrig_gpu_role", "1 for the role a GPU has now, 0 for the others",
                             labels=["gpu", "role"])
    for g in gpus:
        info.add_metric([str(g["index"])], {"uuid": g.get("uuid") or "",
                                            "name": g.get("name") or ""})
        for r in ROLES:
            role.add_metric([str(g["index"]), r], 1.0 if g.get("role") == r else 0.0)
    yield info
    yield role
    for name, doc, field, divisor in GPU_GAUGES:
        family = GaugeMetricFamily(name, doc, labels=["gpu"])
        for g in gpus:
            if g.get(field) is not None:  # NVML could not say: no sample, never a made-up 0
                family.add_metric([str(g["index"])], g[field] / divisor)
        yield family


def _leases(leases: list[dict[str, Any]]) -> Iterator[Metric]:
    active = GaugeMetricFamily("sunrig_leases_active", "Active leases per market",
                               labels=["market"])
    gpus = GaugeMetricFamily("sunrig_leased_gpus", "GPUs held by active leases per market",
                             labels=["market"])
    per_market: dict[str, list[int]] = {}
    for lease in leases:
        n = per_market.setdefault(lease["market"], [0, 0])
        n[0] += 1
        n[1] += lease.get("gpus") or 0
    for market, (count, held) in sorted(per_market.items()):
        active.add_metric([market], count)
        gpus.add_metric([market], held)
    yield active
    yield gpus


def _lifetime_books(lifetime: dict[str, Any], cur: str) -> Iterator[Metric]:
    revenue = CounterMetricFamily("sunrig_revenue", "Revenue booked from GPU markets since the "
                                  "first booking", labels=["market", "currency"])
    for market, amount in (lifetime.get("revenue_by_market") or {}).items():
        revenue.add_metric([market, cur], amount)
    yield revenue
    energy = CounterMetricFamily("sunrig_rig_energy_joules", "The rig's energy since the first "
                                 "booking, by GPU role and by its source at the time (pv, "
                                 "battery, grid); divide by 3.6e6 for kWh",
                                 labels=["role", "source"])
    for r in lifetime.get("energy_wh") or []:
        energy.add_metric([r["role"], r["source"]], r["energy_wh"] * JOULES_PER_WH)
    yield energy
    value = CounterMetricFamily("sunrig_local_inference_value", "What the owner's local "
                                "inference would have cost at the reference token prices",
                                labels=["model", "currency"])
    for model, amount in (lifetime.get("local_value_by_model") or {}).items():
        value.add_metric([model, cur], amount)
    yield value


# from the per user, model and status rows: (metric, help, field)
INFERENCE_COUNTERS = (
    ("sunrig_inference_requests", "Requests the local inference gateway forwarded",
     "requests"),
    ("sunrig_inference_prompt_tokens", "Prompt tokens used (tokens in)", "prompt_tokens"),
    ("sunrig_inference_completion_tokens", "Completion tokens made (tokens out)",
     "completion_tokens"))


def _inference(view: dict[str, Any]) -> Iterator[Metric]:
    """Local inference per user and model since the first request, from the store."""
    rows = view.get("requests") or []
    for name, doc, field in INFERENCE_COUNTERS:
        per_pair: dict[tuple[str, str], int] = {}
        for r in rows:
            key = (r["user"], r["model"])
            per_pair[key] = per_pair.get(key, 0) + r[field]
        counter = CounterMetricFamily(name, doc, labels=["user", "model"])
        for (user, model), n in sorted(per_pair.items()):
            counter.add_metric([user, model], n)
        yield counter
    errors = CounterMetricFamily("sunrig_inference_errors", "Requests answered with an error "
                                 "status, by status", labels=["user", "model", "status"])
    for r in rows:
        if r["status"] >= ERROR_STATUS:
            errors.add_metric([r["user"], r["model"], str(r["status"])], r["requests"])
    yield errors
    yield _latency(view)


def _latency(view: dict[str, Any]) -> Metric:
    bounds = view.get("latency_buckets_s") or []
    histogram = HistogramMetricFamily(
        "sunrig_inference_request_duration_seconds", "Time from a request's arrival at the "
        "gateway to its answer's end, answered requests (status below 400) per model",
        labels=["model"])
    for model, h in (view.get("latency") or {}).items():
        buckets = [(_le(b), n) for b, n in zip(bounds, h["buckets"], strict=True)]
        histogram.add_metric([model], buckets + [("+Inf", h["count"])], h["sum_s"])
    return histogram


def _le(bound: float) -> str:
    return repr(float(bound))


def _gauge(name: str, doc: str, value: float | None, labels: list[str] | None = None,
           values: list[str] | None = None) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=labels or [])
    if value is not None:
        g.add_metric(values or [], float(value))
    return g


def registry_for(status: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
