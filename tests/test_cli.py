"""The real command in a real process: `sunrig demo`, signals, restart, `sunrig status`."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SUNRIG = [sys.executable, "-m", "node.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_status(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as r:
            return json.load(r)
    except OSError:
        return None


def start_demo(port: int, data_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([*SUNRIG, "demo", "--port", str(port), "--speed", "600",
                             "--data-dir", str(data_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(port: int, ok, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        status = get_status(port)
        if status and ok(status):
            return status
        time.sleep(0.3)
    raise AssertionError(f"not reached in {timeout_s} s; last status: {status}")


def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    return out


def over_paid_leases(db: Path) -> list:
    """Leases whose payouts exceed what they could have earned: a double booking."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT l.lease_id FROM leases l JOIN (SELECT market, lease_id, sum(amount) AS paid, "
            "max(ts) AS last FROM payouts GROUP BY market, lease_id) p USING (market, lease_id) "
            "WHERE p.paid > l.gpus * l.price_per_gpu_hour * (coalesce(l.ended, p.last) "
            "- l.started) / 3600.0 + 1e-6").fetchall()


def test_demo_serves_leases_stops_on_signals_and_resumes(tmp_path):
    port, data = free_port(), tmp_path / "demo"
    proc = start_demo(port, data)
    try:
        first = wait_for(port, lambda s: s["leases"], timeout_s=90)
    except AssertionError:
        proc.kill()
        raise
    assert len(first["gpus"]) == 8 and all(g["role"] for g in first["gpus"])
    assert first["site"]["load_w"] is not None and first["price"] is not None
    text = subprocess.run([*SUNRIG, "status", "--url", f"http://127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=30)
    assert text.returncode == 0 and "gpus:" in text.stdout and "leases:" in text.stdout
    assert "payback: " in text.stdout and "484,000 EUR" in text.stdout
    out = stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, out
    assert "Traceback" not in out

    db = data / "sunrig-demo.db"
    with sqlite3.connect(db) as conn:
        leases_before = conn.execute("SELECT lease_id, started FROM leases").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    proc = start_demo(port, data)
    try:
        again = wait_for(port, lambda s: s["ts"] > first["ts"], timeout_s=60)
        time.sleep(2)
    finally:
        out = stop(proc, signal.SIGINT)
    assert proc.returncode == 0, out
    assert again["ts"] >= first["ts"]  # the simulated clock resumed, not restarted
    with sqlite3.connect(db) as conn:
        after = dict(conn.execute("SELECT lease_id, started FROM leases").fetchall())
    assert all(after[lease_id] == started for lease_id, started in leases_before)
    assert over_paid_leases(db) == []


def test_status_without_an_agent_says_so():
    r = subprocess.run([*SUNRIG, "status", "--url", f"http://127.0.0.1:{free_port()}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "cannot reach the agent" in r.stderr


def test_startup_failures_are_one_clear_line(tmp_path):
    if not Path("/dev/nvidiactl").exists():  # without a driver NVML cannot start
        nvml = tmp_path / "nvml.toml"
        nvml.write_text(f"[gpus]\nbackend = 'nvml'\n[store]\npath = '{tmp_path}/s.db'\n")
        r = subprocess.run([*SUNRIG, "run", "--config", str(nvml)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 1 and "NVML could not start" in r.stderr
        assert "Traceback" not in r.stderr
    data = tmp_path / "data.toml"
    data.write_text(f"[energy.simulated]\ndata_file = 'nowhere.csv'\n"
                    f"[store]\npath = '{tmp_path}/s2.db'\n")
    r = subprocess.run([*SUNRIG, "run", "--config", str(data)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "nowhere.csv: no such file" in r.stderr
    state = tmp_path / "sim-market.json"
    state.write_text("{broken")
    market = tmp_path / "market.toml"
    market.write_text(f"[markets.sim]\nenabled = true\n[store]\npath = '{tmp_path}/s3.db'\n")
    r = subprocess.run([*SUNRIG, "run", "--config", str(market)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "sim-market.json" in r.stderr and "Traceback" not in r.stderr


def test_run_with_a_broken_config_exits_2(tmp_path):
    cfg = tmp_path / "sunrig.toml"
    cfg.write_text("[markets.sim]\nenabeld = true\n")
    r = subprocess.run([*SUNRIG, "run", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=30, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 2 and "markets.sim.enabeld" in r.stderr
