"""Benchmarks that print figures: `make bench`.

- start-up: launching `sunrig demo` until /api/status answers with 8 GPUs (a real process);
- memory: the demo process's peak resident set after it has run a while;
- one agent cycle: every job once, in process, on a simulated clock;
- /api/status latency after a simulated day;
- simulation speed: simulated hours per real second with all jobs at their intervals;
- TEE: offline verification of the real Hopper evidence, with and without RIMs.
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
    proc = subprocess.Popen([sys.executable, "-m", "node.cli", "demo", "--port", str(port),
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
        print(f"one agent cycle (all 8 jobs): median {statistics.median(cycles) * 1000:.1f} ms, "
              f"p95 {cycles[94] * 1000:.1f} ms")
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


if __name__ == "__main__":
    bench_startup()
    bench_in_process()
    bench_tee()
