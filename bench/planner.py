"""The planner's speed and memory: `make bench` runs this.

Inputs come from the real data: the owner scenario's household trace and day-ahead prices at
many moments of the year (so the sky, the prices, the owner's reservation, the leases running and
the battery differ from plan to plan). The parent turns each moment into plain per-slot numbers
(JSON); a child process that imports only what planning needs rebuilds the inputs and times the
whole `plan()`, from the inputs to the `Plan` it returns, and reports its own peak resident set.
The first plan of the child also pays for importing the solver, and is reported apart.

Also: how solve time grows with the rig (8 to 64 GPUs) and with the horizon (24 h to 96 h), and,
where `make bench-emhass` has installed EMHASS into its own environment, the same moments solved
by EMHASS side by side (bench/emhass_side.py) with the ratio of the whole plan() to its solves.
Every figure is given in wall and in CPU time: on a busy machine the wall clock mostly measures
the neighbours.
Targets for 48 h x 15 min, 8 GPUs and a battery: median < 50 ms, worst < 150 ms, RSS < 120 MiB.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCENARIO = ROOT / "scenarios" / "owner-8gpu.toml"
PLANS = 40  # moments of the year; the targets are judged over all but the first
EMHASS_MOMENTS = 6  # EMHASS takes seconds a solve
# where `make bench-emhass` puts EMHASS's environment (outside the checkout)
EMHASS_PYTHON = Path(os.environ.get("SUNRIG_EMHASS_PYTHON") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sunrig" / "emhass-venv"
    / "bin" / "python")
TARGET_MEDIAN_MS, TARGET_WORST_MS, TARGET_RSS_MIB = 50.0, 150.0, 120.0


def moments(plans: int, horizon_hours: int, gpus: int) -> list[dict]:
    """`plans` planning moments spread over the scenario's year, as plain numbers per slot:
    prices, PV and house load as they came (a perfect forecast), the owner's GPUs, and the
    leases and battery charge of a rig that has been selling."""
    from node.cli.simulate import scenario
    from node.planning.economics import load_site
    from node.wiring import sim_terms

    cfg = scenario(str(SCENARIO))
    cfg = replace(cfg, simulation=replace(cfg.simulation, days=364))
    site = load_site(cfg)
    terms = sim_terms(cfg)
    g, s, bat = cfg.gpus.simulated, cfg.site, cfg.energy.simulated.battery
    slots = horizon_hours * 4
    out = []
    for i in range(plans):
        k = (i * 7919 + 37) % (site.steps - slots)  # a prime stride: all hours and weekdays
        out.append({
            "now": (site.starts[k] + timedelta(minutes=7)).isoformat(),
            "horizon_hours": horizon_hours,
            "gpus": gpus, "busy_w": g.busy_w, "idle_w": g.idle_w,
            "host_w": s.host_overhead_w * gpus / 8, "cooling": s.cooling_factor,
            "breaker_w": s.breaker_limit_w * gpus / 8,
            "terms": [terms.expected_price_per_gpu_hour, terms.ask_price_per_gpu_hour,
                      terms.orders_per_hour * gpus / 8 * (0.6 + 0.8 * (i % 5) / 4),
                      terms.mean_gpus_per_order, terms.price_spread, terms.mean_lease_hours],
            "order_sizes": [list(x) for x in terms.order_sizes],
            "import": site.import_per_kwh[k:k + slots].tolist(),
            "export": site.export_per_kwh[k:k + slots].tolist(),
            "pv_w": site.pv_w[k:k + slots].tolist(), "house_w": site.load_w[k:k + slots].tolist(),
            "local": [int(n * gpus / 8) for n in site.local_gpus[k:k + slots]],
            "leased_now": (i * 3) % (gpus - int(site.local_gpus[k] * gpus / 8) + 1),
            "battery_wh": [bat.capacity_kwh * 1000, bat.capacity_kwh * 1000 * (i % 10) / 10,
                           bat.capacity_kwh * bat.min_soc_pct * 10, bat.max_charge_w,
                           bat.max_discharge_w],
            "wear": cfg.planner.wear_per_gpu_hour, "margin": cfg.planner.margin_per_gpu_hour,
            "min_floor": cfg.planner.min_floor_per_gpu_hour})
    return out


def child() -> None:
    """Plan every moment read from stdin; print each whole plan()'s seconds and the peak RSS."""
    import time

    from node.planning.milp import MilpPlanner

    times, cpu, statuses = [], [], []
    for doc in json.load(sys.stdin):
        now, inp = _inputs(doc)
        planner = MilpPlanner(doc["horizon_hours"], 15)
        t0, c0 = time.perf_counter(), time.process_time()
        plan = planner.plan(now, inp)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        statuses.append(planner.last.status)
        assert len(plan.slots) == doc["horizon_hours"] * 4, planner.last.status
    print(json.dumps({"seconds": times, "cpu_seconds": cpu, "statuses": statuses,
                      "rss_mib": _peak_rss_kib() / 1024}))


def _peak_rss_kib() -> int:
    """This process's own peak resident set. Linux keeps ru_maxrss across exec, so a child
    started from a big parent would report the parent's size; VmHWM starts afresh at exec."""
    import resource

    try:
        status = Path("/proc/self/status").read_text()
        return int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _inputs(doc: dict):
    from energy.types import PriceSlot
    from node.planning.planner import BatteryState, MarketTerms, PlanInputs

    now = datetime.fromisoformat(doc["now"])
    first = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    step = timedelta(minutes=15)
    prices = [PriceSlot(first + q * step, first + (q + 1) * step, imp, exp)
              for q, (imp, exp) in enumerate(zip(doc["import"], doc["export"], strict=True))]
    e, a, orders, size, spread, hours = doc["terms"]
    terms = MarketTerms(e, a, orders, size, spread, hours,
                        tuple(tuple(x) for x in doc["order_sizes"]))

    def at(series: list) -> Callable[[datetime], float]:
        return lambda ts: series[min(len(series) - 1, max(0, int((ts - first) / step)))]

    leased = doc["leased_now"]
    return now, PlanInputs(
        gpu_count=doc["gpus"], local_gpus_at=at(doc["local"]), prices=prices,
        markets={"sim": terms}, gpu_busy_w=doc["busy_w"], gpu_min_limit_w=doc["idle_w"],
        host_overhead_w=doc["host_w"], cooling_factor=doc["cooling"],
        breaker_limit_w=doc["breaker_w"], house_load_w=doc["house_w"][0], exporting_now=False,
        wear_per_gpu_hour=doc["wear"], margin_per_gpu_hour=doc["margin"],
        min_floor_per_gpu_hour=doc["min_floor"], expected_lease_hours=hours,
        pv_w_at=at(doc["pv_w"]), house_w_at=at(doc["house_w"]),
        battery=BatteryState(*doc["battery_wh"]),
        leased_gpus_at=lambda m, ts: leased * math.exp(
            -max(0.0, (ts - now).total_seconds()) / 3600.0 / hours),
        shortfall_per_gpu_hour=None)


def run_child(docs: list[dict]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child"], input=json.dumps(docs),
                         capture_output=True, text=True, check=True, cwd=ROOT, timeout=1800)
    return json.loads(out.stdout)


def bench_plan() -> dict:
    result = run_child(moments(PLANS, 48, 8))
    cold, warm = result["seconds"][0], sorted(result["seconds"][1:])
    cpu = sorted(result["cpu_seconds"][1:])
    median_ms, worst_ms = statistics.median(warm) * 1000, warm[-1] * 1000
    fallbacks = sum(1 for s in result["statuses"] if s != "optimal")
    print(f"planner, whole plan() for 48 h x 15 min, 8 GPUs + battery, {len(warm)} moments of "
          f"the owner's year: median {median_ms:.1f} ms (target < {TARGET_MEDIAN_MS:.0f}), "
          f"worst {worst_ms:.1f} ms (< {TARGET_WORST_MS:.0f}); CPU median "
          f"{statistics.median(cpu) * 1000:.1f} ms, worst {cpu[-1] * 1000:.1f} ms; the first "
          f"plan, importing the solver, {cold * 1000:.0f} ms; not optimal: {fallbacks}")
    print(f"planning process peak RSS: {result['rss_mib']:.0f} MiB (target < "
          f"{TARGET_RSS_MIB:.0f})")
    return result


def bench_emhass(plans: dict) -> None:
    """The first EMHASS_MOMENTS moments solved by EMHASS, beside the planner's plan() of the
    same moments (from `plans`, the planner's run over all of them)."""
    if not EMHASS_PYTHON.exists():
        print(f"EMHASS side by side: not installed ({EMHASS_PYTHON}); `make bench-emhass`")
        return
    docs = moments(PLANS, 48, 8)[:EMHASS_MOMENTS]
    out = subprocess.run([str(EMHASS_PYTHON), str(ROOT / "bench" / "emhass_side.py")],
                         input=json.dumps(docs), capture_output=True, text=True, check=True,
                         cwd=ROOT, timeout=3600)
    side = json.loads(out.stdout.strip().splitlines()[-1])
    rows = side["moments"]
    ours = {"wall": plans["seconds"][1:EMHASS_MOMENTS],
            "CPU": plans["cpu_seconds"][1:EMHASS_MOMENTS]}  # the first pays for imports
    theirs = {"wall": ("fresh_s", "warm_s"), "CPU": ("fresh_cpu_s", "warm_cpu_s")}
    for clock, (fresh, warm) in theirs.items():
        plan_s = statistics.median(ours[clock])
        fresh_s = statistics.median(r[fresh] for r in rows)
        warm_s = statistics.median(r[warm] for r in rows)
        print(f"EMHASS {side['emhass']} side by side, {clock} (median of {len(rows)} moments): "
              f"fresh {fresh_s * 1000:.0f} ms, warm {warm_s * 1000:.0f} ms; sunrig's whole "
              f"plan() {plan_s * 1000:.1f} ms = {plan_s / fresh_s:.3f} of EMHASS fresh, "
              f"{plan_s / warm_s:.3f} of warm")
    print("EMHASS statuses: " + ", ".join(sorted({r["status"] for r in rows}
                                                 | {r["warm_status"] for r in rows})))


def bench_scaling(plans: int = 8) -> None:
    """Median whole plan(), wall and CPU, over the same moments as the rig and the horizon
    grow."""
    def medians_ms(horizon_hours: int, gpus: int) -> tuple[float, float]:
        result = run_child(moments(plans + 1, horizon_hours, gpus))
        return (statistics.median(result["seconds"][1:]) * 1000,
                statistics.median(result["cpu_seconds"][1:]) * 1000)

    def line(label: str, figures: dict) -> str:
        return ", ".join(f"{k} {label} {w:.0f} ms (CPU {c:.0f})" for k, (w, c) in figures.items())

    by_gpus = {n: medians_ms(48, n) for n in (8, 16, 32, 64)}
    print("planner by rig size (48 h x 15 min, median): " + line("GPUs", by_gpus)
          + f"; 64 / 8 = {by_gpus[64][1] / by_gpus[8][1]:.1f}x in CPU")
    by_hours = {h: medians_ms(h, 8) for h in (24, 48, 96)}
    print("planner by horizon (8 GPUs, 15 min slots, median): " + line("h", by_hours)
          + f"; 96 h / 24 h = {by_hours[96][1] / by_hours[24][1]:.1f}x in CPU")


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        bench_emhass(bench_plan())
        bench_scaling()
