"""The agent's start-up and steady memory: `make bench` runs this.

- first answer: seconds from launching `sunrig demo` until the dashboard answers /api/status,
  beside a process that only imports the modules the demo imports (what imports alone cost);
- memory: the demo's resident set at its first answer and then every few seconds over a bounded
  steady period (SUNRIG_BENCH_STEADY_S, 90 s by default; the demo's clock runs at x120, so a
  real minute is two simulated hours).
Targets: first answer < 3 s, steady RSS < 150 MiB, no growth.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEADY_S = 90.0  # how long the demo runs after its first answer
SAMPLE_S = 10.0
TARGET_FIRST_S, TARGET_RSS_MIB = 3.0, 150.0
IMPORTS = "import node.cli.commands, node.service, node.agent, webui.app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) / 1024


def cpu_s(pid: int) -> float:
    """The process's own CPU seconds (user and system): what a busy machine does not inflate."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answers(port: int) -> bool:
    """The dashboard's status with the rig's GPUs in it (not merely a page)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as r:
            return r.status == 200 and len(json.load(r).get("gpus") or []) > 0
    except (OSError, ValueError):
        return False


def imports_only_s() -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", IMPORTS], check=True, cwd=ROOT)
    return time.monotonic() - t0


def run_demo(data_dir: Path, steady_s: float
             ) -> tuple[float, float, list[tuple[float, float]]]:
    """Seconds to the first answer, the demo's CPU seconds by then, and (seconds since it,
    RSS MiB) samples after it."""
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "node.cli", "demo", "--port", str(port),
                             "--data-dir", str(data_dir)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not answers(port):
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                raise RuntimeError("the demo did not answer within 120 s")
            time.sleep(0.02)
        first_s, first_cpu_s = time.monotonic() - t0, cpu_s(proc.pid)
        samples, start = [(0.0, rss_mib(proc.pid))], time.monotonic()
        while time.monotonic() - start < steady_s:
            time.sleep(SAMPLE_S)
            answers(port)  # the dashboard is polled, as a browser would
            samples.append((time.monotonic() - start, rss_mib(proc.pid)))
        return first_s, first_cpu_s, samples
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    steady_s = float(os.environ.get("SUNRIG_BENCH_STEADY_S", STEADY_S))
    bare = imports_only_s()
    with tempfile.TemporaryDirectory() as d:
        first_s, first_cpu_s, samples = run_demo(Path(d), steady_s)
    print(f"agent first answer: {first_s:.2f} s (target < {TARGET_FIRST_S:.0f}), the demo's "
          f"CPU by then {first_cpu_s:.2f} s; a process that only imports its modules: "
          f"{bare:.2f} s ({first_s / bare:.2f}x)")
    start, end = samples[0][1], samples[-1][1]
    half = [rss for t, rss in samples if t >= samples[-1][0] / 2]
    print(f"agent RSS: {start:.0f} MiB at the first answer, {end:.0f} MiB after "
          f"{samples[-1][0]:.0f} s, peak {max(r for _, r in samples):.0f} MiB (target < "
          f"{TARGET_RSS_MIB:.0f}); over the second half {max(half) - min(half):+.0f} MiB")


if __name__ == "__main__":
    main()
