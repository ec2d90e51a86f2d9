"""Benchmarks that print figures: `make bench`.

- start-up: launching `sunrig demo` until /api/status answers with 8 GPUs (a real process);
- memory: the demo process's peak resident set after it has run a while;
- one agent cycle: every job once, in process, on a simulated clock;
- /api/status latency after a simulated day;
- simulation speed: simulated hours per real second with all jobs at their intervals;
- TEE: offline verification of the real Hopper evidence, with and without RIMs;
- planner: MILP solve time for 48 h x 15 min with 8 GPUs and a battery, and its memory;
- site I/O: one SunSpec poll (5 models) against the simulated site on a real pymodbus server, and
  MQTT messages per second parsed from a real mosquitto, with the CPU each costs;
- dashboard API: p95 latency of each /api endpoint over a store holding a generated year of
  1-minute site and GPU samples, daily ledger and prices, and that store's size on disk;
- Akash bid-price script: wall time per order of the whole script process as the provider runs
  it (bash, curl, the agent's bid endpoint), beside the chart's price_script_generic.sh when
  AKASH_REFERENCE_PRICE_SCRIPT names a copy of it.
The economics benchmark is `sunrig bench economics` (the Makefile runs it per scenario).
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.status import agent_status  # noqa: E402
from tests.conftest import make_agent, run_for  # noqa: E402
from webui.app import create_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def startup_once(data_dir: Path) -> tuple[float, int]:
    """Seconds from launch to a status with 8 GPUs, and the peak RSS in KiB after 15 s."""
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "node.cli.commands", "demo", "--port", str(port),
                             "--data-dir", str(data_dir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=1) as r:
                    if len(json.load(r)["gpus"]) == 8:
                        break
            except OSError:
                pass
            if time.monotonic() - t0 > 60:
                raise RuntimeError("the demo did not answer within 60 s")
            time.sleep(0.02)
        startup_s = time.monotonic() - t0
        time.sleep(max(0.0, 15 - startup_s))
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peak_kib = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return startup_s, peak_kib


def bench_startup() -> None:
    runs = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as d:
            runs.append(startup_once(Path(d)))
    times = sorted(r[0] for r in runs)
    print(f"start-up to first status (3 runs): median {statistics.median(times):.2f} s, "
          f"worst {times[-1]:.2f} s")
    print(f"demo peak memory (RSS after 15 s at x120): {max(r[1] for r in runs) / 1024:.0f} MiB")


def bench_in_process() -> None:
    with tempfile.TemporaryDirectory() as d:
        agent, clock = make_agent(Path(d), orders_per_hour=6.0, ask_price_per_gpu_hour=1.8)
        t0 = time.perf_counter()
        run_for(agent, clock, hours=24)
        elapsed = time.perf_counter() - t0
        print(f"simulation: 24 h with all jobs at their intervals in {elapsed:.2f} s "
              f"({24 / elapsed:.0f} simulated hours per second)")
        cycles = []
        for _ in range(100):
            clock.advance(60)
            t = time.perf_counter()
            agent.run_all_once()
            cycles.append(time.perf_counter() - t)
        cycles.sort()
        print(f"one agent cycle (every job once): median "
              f"{statistics.median(cycles) * 1000:.1f} ms, p95 {cycles[94] * 1000:.1f} ms")
        client = create_app(lambda: agent_status(agent)).test_client()
        lat = []
        for _ in range(200):
            t = time.perf_counter()
            assert client.get("/api/status").status_code == 200
            lat.append(time.perf_counter() - t)
        lat.sort()
        print(f"/api/status after a simulated day: median {statistics.median(lat) * 1000:.1f} ms, "
              f"p95 {lat[189] * 1000:.1f} ms")
        agent.store.close()


def bench_tee() -> None:
    from tee.rim import parse_rim
    from tee.verify import Trust, verify
    from tests.tee_helpers import NONCE, RIM_FILES, gpu_evidence

    evidence = gpu_evidence()
    with_rims = Trust(rims=tuple(parse_rim(f.read_bytes(), f.name) for f in RIM_FILES))
    for label, trust in (("GPU report", Trust()), ("GPU report + 2 RIMs", with_rims)):
        times = []
        for _ in range(30):
            t = time.perf_counter()
            verify(evidence, NONCE, trust)
            times.append(time.perf_counter() - t)
        print(f"TEE verify ({label}): median {statistics.median(times) * 1000:.1f} ms, "
              f"worst {max(times) * 1000:.1f} ms")


def bench_planner() -> None:
    import math
    import resource
    from datetime import UTC, datetime, timedelta

    from energy.types import PriceSlot
    from node.planning.milp import MilpPlanner
    from node.planning.planner import BatteryState, MarketTerms, PlanInputs

    now = datetime(2024, 6, 12, 10, 7, tzinfo=UTC)
    first = now.replace(minute=0)
    times = []
    planner = MilpPlanner(48, 15)
    for run in range(30):
        prices = [PriceSlot(first + timedelta(minutes=15 * q), first + timedelta(
            minutes=15 * (q + 1)), 0.25 + 0.15 * math.sin((q + run) / 13), 0.02 * math.cos(q / 9))
            for q in range(192)]
        inp = PlanInputs(
            gpu_count=8, local_gpus_at=lambda ts: 2 if 8 <= ts.hour < 18 else 1, prices=prices,
            markets={"sim": MarketTerms(2.1, 1.84, 4.0 * (0.3 + run / 40), mean_lease_hours=8)},
            gpu_busy_w=650.0, gpu_min_limit_w=200.0, host_overhead_w=800.0, cooling_factor=1.2,
            breaker_limit_w=17000.0, house_load_w=600.0, exporting_now=False,
            wear_per_gpu_hour=0.1, margin_per_gpu_hour=0.1, min_floor_per_gpu_hour=0.5,
            pv_w_at=lambda ts: max(0.0, 25000 * math.sin((ts.hour - 6) / 12 * math.pi)),
            house_w_at=lambda ts: 600.0 + 400 * (ts.hour > 17),
            battery=BatteryState(20000, 10000, 2000, 8000, 8000),
            leased_gpus_at=lambda m, ts, run=run: (run % 5) * 0.9 ** ((ts - now).seconds / 3600))
        planner.plan(now, inp)
        times.append(planner.last.seconds)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"planner solve, 48 h x 15 min, 8 GPUs + battery (30 solves): median "
          f"{statistics.median(times) * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms; "
          f"process peak RSS {rss_mib:.0f} MiB")


def bench_price_script(orders: int = 200) -> None:
    """The provider's view: one order priced by the whole bid-price script process (the printed
    bash script, curl and the agent's bid endpoint), and the chart's reference script beside it
    when AKASH_REFERENCE_PRICE_SCRIPT names a copy of price_script_generic.sh."""
    import os
    import secrets
    from datetime import UTC, datetime, timedelta

    from market_adapter.akash import AkashPrices, build_offer
    from market_adapter.akash_bid import parse_offer, price_request
    from market_adapter.akash_bid_server import BidServer, bid_script
    from market_adapter.base import Capacity
    from tests.akash_helpers import provider_order, provider_service, provider_stdin
    offer = parse_offer(build_offer(Capacity(6, "h200", 141.0), 2.1, AkashPrices(),
                                    datetime.now(UTC) + timedelta(hours=1), "sxm"))
    token = secrets.token_urlsafe(32)
    server = BidServer("127.0.0.1", 0, token, lambda body: price_request(
        body, offer, datetime.now(UTC))).start()
    # uact: neither script needs an exchange rate
    stdin = provider_stdin(provider_order(provider_service(units=2), amount="100000"))
    env = {"PATH": "/usr/bin:/bin", "AKASH_OWNER": "akash1tenant", "AKASH_DENOM": "uact"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "price_script.sh"
            script.write_text(bid_script(server.url, token))
            script.chmod(0o700)
            _time_script("sunrig script + agent endpoint", [str(script)], stdin, env, orders)
    finally:
        server.stop()
    reference = os.environ.get("AKASH_REFERENCE_PRICE_SCRIPT")
    if reference:
        # it reads the AKT price (cached 60 min) before any denom is looked at; a fresh cache
        # keeps it offline, and a uact order never uses the price
        cache = Path("/tmp/aktprice.cache")
        if not cache.exists() or time.time() - cache.stat().st_mtime > 1800:
            cache.write_text("1.0\n")
        _time_script("chart's price_script_generic.sh", ["bash", reference], stdin,
                     {**env, "PRICE_TARGET_GPU_MAPPINGS": "h200=1500"}, orders)


def _time_script(label: str, cmd: list[str], stdin: bytes, env: dict, orders: int) -> None:
    import math
    times = []
    for _ in range(orders):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, input=stdin, capture_output=True, env=env, check=True)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"Akash bid-price script ({label}, {orders} orders): median "
          f"{statistics.median(times) * 1000:.1f} ms, p95 "
          f"{times[math.ceil(0.95 * orders) - 1] * 1000:.1f} ms -> "
          f"{out.stdout.decode().strip()} uact/block")


def bench_site_io() -> None:
    from datetime import UTC, datetime

    from energy.modbus import ModbusHub, SunSpecSite
    from energy.sim import BatterySpec, SimulatedSite
    from energy.sunspec_sim import SunSpecSimServer
    now = datetime(2024, 6, 12, 10, tzinfo=UTC)
    server = SunSpecSimServer(SimulatedSite(pv_scale=6.0, battery=BatterySpec(20, 8000, 8000)),
                              lambda: now).start()
    try:
        site = SunSpecSite(ModbusHub().link("127.0.0.1", server.port))
        site.read(now)
        times, cpu0 = [], time.process_time()
        for _ in range(200):
            t0 = time.perf_counter()
            site.read(now)
            times.append(time.perf_counter() - t0)
        cpu_ms = (time.process_time() - cpu0) / 200 * 1000
    finally:
        server.stop()
    times.sort()
    print(f"SunSpec poll (5 models, 200 polls): median {statistics.median(times) * 1000:.1f} ms, "
          f"p95 {times[189] * 1000:.1f} ms, CPU {cpu_ms:.1f} ms per poll (client and server)")
    bench_mqtt()


def bench_mqtt(messages: int = 20000) -> None:
    from energy.mqtt import Mapping, MqttSettings, MqttSite
    from tests.mosquitto import Broker
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp)).start()
        site = MqttSite(MqttSettings(port=broker.port, mappings=[
            Mapping("tele/meter/SENSOR", "grid_w", "ENERGY.Power")])).start()
        try:
            while not site.connected.wait(0.1):
                pass
            time.sleep(0.3)
            publisher = (
                "import json, paho.mqtt.client as m\n"
                "c = m.Client(m.CallbackAPIVersion.VERSION2)\n"
                f"c.connect('127.0.0.1', {broker.port})\n"
                "c.loop_start()\n"
                f"for i in range({messages}):\n"
                "    c.publish('tele/meter/SENSOR', json.dumps({'ENERGY': {'Power': i}}))\n"
                "c.loop_stop(); c.disconnect()\n")
            cpu0, t0 = time.process_time(), time.perf_counter()
            subprocess.run([sys.executable, "-c", publisher], check=True, timeout=120)
            deadline = time.monotonic() + 60
            while site.received < messages and time.monotonic() < deadline:
                time.sleep(0.01)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        finally:
            site.stop()
            broker.stop()
    print(f"MQTT ingest: {site.received} of {messages} messages in {elapsed:.2f} s = "
          f"{site.received / elapsed:,.0f}/s; sunrig's CPU {cpu / max(site.received, 1) * 1e6:.0f} "
          f"us per message")


def bench_api_year() -> None:
    import math
    import os
    from datetime import timedelta

    from node.service import views_for
    from tests.conftest import START
    with tempfile.TemporaryDirectory() as tmp:
        # a year ending after the demo's CapEx date, so the payback has a year to add up
        agent, clock = make_agent(Path(tmp), start=START + timedelta(days=730))
        run_for(agent, clock, hours=0.25)  # first, so no clean-up thins the year out
        _fill_year(agent.store, clock.now() - timedelta(days=365), clock.now())
        app = create_app(lambda: agent_status(agent), views=views_for(agent)).test_client()
        agent.store.query("PRAGMA wal_checkpoint(TRUNCATE)")
        size_mib = sum(os.path.getsize(f) for f in (agent.store.path, agent.store.path + "-wal")
                       if os.path.exists(f)) / 2**20
        day = clock.now().date()
        paths = ["/api/status", "/api/plan", "/api/payback", "/api/settings",
                 "/api/history", f"/api/history?from={day - timedelta(days=364)}&to={day}",
                 f"/api/history.csv?from={day - timedelta(days=364)}&to={day}", "/metrics"]
        print(f"dashboard API over a year of 1-minute data (store {size_mib:,.0f} MiB):")
        for path in paths:
            times = []
            for _ in range(40):
                t0 = time.perf_counter()
                r = app.get(path)
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200, (path, r.status_code)
            times.sort()
            p95 = times[math.ceil(0.95 * len(times)) - 1]
            print(f"  {path:60} p95 {p95 * 1000:7.1f} ms  median "
                  f"{statistics.median(times) * 1000:6.1f} ms")
        agent.store.close()


def _fill_year(store, first, last) -> None:
    """A year of 1-minute site and GPU samples, daily ledger rows and hourly prices."""
    import math
    import random
    from datetime import timedelta
    rng = random.Random(1)
    minutes = int((last - first).total_seconds() // 60)
    t0 = first.timestamp()
    with store.transaction() as db:
        site, gpus = [], []
        for k in range(minutes):
            ts = t0 + 60 * k
            sun = max(0.0, math.sin((k % 1440) / 1440 * 2 * math.pi - math.pi / 2))
            site.append((ts, 20000 * sun, 800 + 300 * rng.random(), -5000 * sun + 4000, 0.0,
                         50.0))
            for g in range(8):
                gpus.append((ts, g, f"GPU-{g}", "market", 90 + 560 * rng.random(), None,
                             50.0, 0, 50.0, 60.0, 1.0))
            if len(gpus) >= 400_000:
                _insert(db, site, gpus)
                site, gpus = [], []
        _insert(db, site, gpus)
        day = first.date()
        while day <= last.date():
            d = day.isoformat()
            db.execute("INSERT OR IGNORE INTO ledger_daily VALUES (?, 'revenue', 'sim', '', 0, ?)",
                       [d, 250 + 50 * rng.random()])
            for source in ("pv", "battery", "grid"):
                db.execute("INSERT OR IGNORE INTO ledger_daily VALUES (?, 'energy', 'market', ?, "
                           "?, ?)", [d, source, 40000 * rng.random(), 5 * rng.random()])
            day += timedelta(days=1)
        db.conn.executemany("INSERT OR IGNORE INTO price_slots VALUES (?,?,?,?)",
                       [(t0 + 3600 * h, t0 + 3600 * (h + 1), 0.2 + 0.1 * rng.random(), 0.05)
                        for h in range(minutes // 60)])


def _insert(db, site: list, gpus: list) -> None:
    db.conn.executemany("INSERT OR IGNORE INTO site_samples (ts, pv_w, load_w, grid_w, "
                        "battery_w, soc_pct) VALUES (?,?,?,?,?,?)", site)
    db.conn.executemany("INSERT OR IGNORE INTO gpu_samples (ts, gpu_index, uuid, role, "
                        "power_w, energy_wh, util_pct, memory_used_bytes, temp_c, interval_s, "
                        "interval_energy_wh) VALUES (?,?,?,?,?,?,?,?,?,?,?)", gpus)


if __name__ == "__main__":
    bench_api_year()
    bench_site_io()
    bench_price_script()
    bench_planner()
    bench_startup()
    bench_in_process()
    bench_tee()
