"""Prometheus metrics (`/metrics`) from the agent's status, read at each scrape.

A registry per app and a collector over the status function: nothing is cached between scrapes,
so what Prometheus sees is what the dashboard shows. No secret is ever a metric or a label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StatusCollector(Collector):
    def __init__(self, status: Callable[[], dict[str, Any]]):
        self.status = status

    def collect(self) -> Iterator[Metric]:
        s = self.status()
        cur = s.get("currency", "")
        yield _gauge("sunrig_rig_power_watts", "The rig's draw, cooling included", s.get(
            "rig_power_w"))
        roles = GaugeMetricFamily("sunrig_gpus", "GPUs by role", labels=["role"])
        for role, n in (s.get("roles") or {}).items():
            roles.add_metric([role], n)
        yield roles
        site = s.get("site") or {}
        flows = GaugeMetricFamily("sunrig_site_power_watts", "Site power: pv, house load, grid "
                                  "(+ importing), battery (+ charging)", labels=["flow"])
        for flow in ("pv", "load", "grid", "battery"):
            if site.get(f"{flow}_w") is not None:
                flows.add_metric([flow], site[f"{flow}_w"])
        yield flows
        yield _gauge("sunrig_battery_soc_percent", "Battery state of charge", site.get("soc_pct"))
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
        today = s.get("today") or {}
        by_source = GaugeMetricFamily("sunrig_rig_energy_today_kwh", "The rig's energy today by "
                                      "its source at the time: pv, battery, grid",
                                      labels=["source"])
        for source, kwh in (today.get("energy_kwh_by_source") or {}).items():
            by_source.add_metric([source], kwh)
        yield by_source
        yield _gauge("sunrig_revenue_today", "Revenue booked today", today.get("revenue"),
                     ["currency"], [cur])
        yield _gauge("sunrig_energy_cost_today", "The rig's energy cost today",
                     today.get("energy_cost"), ["currency"], [cur])
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
        plan = s.get("plan") or {}
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
        jobs = GaugeMetricFamily("sunrig_job_ok", "1 while a job's last run succeeded",
                                 labels=["job"])
        for name, job in (s.get("jobs") or {}).items():
            jobs.add_metric([name], 1.0 if job.get("ok") else 0.0)
        yield jobs
        yield from _inference_counters(s.get("local_inference") or {})
        yield _gauge("sunrig_tee_advertised", "1 while attested TEE capacity is offered",
                     1.0 if (s.get("tee") or {}).get("advertised") else 0.0)


INFERENCE_COUNTERS = (
    ("requests", "sunrig_inference_requests", "Requests to the local inference gateway"),
    ("errors", "sunrig_inference_errors", "Requests answered with an error status"),
    ("prompt_tokens", "sunrig_inference_prompt_tokens", "Prompt tokens used"),
    ("completion_tokens", "sunrig_inference_completion_tokens", "Completion tokens used"))


def _inference_counters(view: dict[str, Any]) -> Iterator[Metric]:
    """Local inference per user and model since the agent started (counters: they restart
    from zero with it, as Prometheus expects of counters)."""
    for field, name, doc in INFERENCE_COUNTERS:
        counter = CounterMetricFamily(name, doc + " since the agent started",
                                      labels=["user", "model"])
        for row in view.get("usage_since_start") or []:
            counter.add_metric([row["user"], row["model"]], row[field])
        yield counter


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
