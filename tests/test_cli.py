"""The real command in a real process: `sunrig demo`, signals, restart, `sunrig status`."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from energy.files import MAX_SET_ASIDE
from node.cli.commands import format_status, main
from tests.conftest import HANG_S

# free_port and get_status live beside Demo; other test modules import them from here too
from tests.demo_process import Demo, free_port, get_status  # noqa: F401

pytestmark = pytest.mark.slow
SUNRIG = [sys.executable, "-m", "node.cli"]


def start_demo(data_dir: Path, *args: str, ready, what: str) -> tuple[Demo, dict]:
    """A demo at 600x and its first status for which `ready` holds; stopped if it never comes."""
    demo = Demo(data_dir, "--speed", "600", *args)
    try:
        return demo, demo.wait_for(ready, what)
    except BaseException:
        demo.stop(signal.SIGKILL)
        raise


def stopped_cleanly(demo: Demo, sig: int) -> None:
    assert demo.stop(sig) == 0, demo.tail()
    assert "Traceback" not in demo.log.read_text(), demo.tail()


def synced_after(status: dict, ts: str) -> bool:
    """Whether the markets were synced (payouts booked) after the simulated time `ts`."""
    last = status["jobs"].get("sync_markets", {}).get("last_ok")
    return bool(last) and datetime.fromisoformat(last) > datetime.fromisoformat(ts)


def over_paid_leases(db: Path) -> list:
    """Leases whose payouts exceed what they could have earned: a double booking."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT l.lease_id FROM leases l JOIN (SELECT market, lease_id, sum(amount) AS paid, "
            "max(ts) AS last FROM payouts GROUP BY market, lease_id) p USING (market, lease_id) "
            "WHERE p.paid > l.gpus * l.price_per_gpu_hour * (coalesce(l.ended, p.last) "
            "- l.started) / 3600.0 + 1e-6").fetchall()


def test_demo_serves_leases_stops_on_signals_and_resumes(tmp_path):
    data = tmp_path / "demo"
    demo, first = start_demo(data, ready=lambda s: s["leases"], what="the demo's first leases")
    assert len(first["gpus"]) == 8 and all(g["role"] for g in first["gpus"])
    assert first["site"]["load_w"] is not None and first["price"] is not None
    try:
        text = subprocess.run([*SUNRIG, "status", "--url", demo.url], capture_output=True,
                              text=True, timeout=HANG_S)
    finally:
        stopped_cleanly(demo, signal.SIGTERM)
    assert text.returncode == 0 and "gpus:" in text.stdout and "leases:" in text.stdout
    assert "payback: " in text.stdout and "484,000 EUR" in text.stdout

    db = data / "sunrig-demo.db"
    with sqlite3.connect(db) as conn:
        leases_before = conn.execute("SELECT lease_id, started FROM leases").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    demo, again = start_demo(data, ready=lambda s: s["ts"] > first["ts"],
                             what="the resumed demo")
    try:  # a payout booked twice on resuming would be in the store once a sync has run
        demo.wait_for(lambda s: synced_after(s, again["ts"]), "a market sync after the restart")
    finally:
        stopped_cleanly(demo, signal.SIGINT)
    assert again["ts"] >= first["ts"]  # the simulated clock resumed, not restarted
    with sqlite3.connect(db) as conn:
        after = dict(conn.execute("SELECT lease_id, started FROM leases").fetchall())
    assert all(after[lease_id] == started for lease_id, started in leases_before)
    assert over_paid_leases(db) == []


def test_demo_runs_on_a_given_config_with_its_own_store_and_port(tmp_path):
    default = resources.files("node").joinpath("default.toml").read_text(encoding="utf-8")
    elsewhere = tmp_path / "elsewhere.db"
    text = (default.replace('name = "Demo rig"', 'name = "Rooftop rig"')
            .replace("port = 8080", "port = 9")
            .replace('path = "var/demo/sunrig-demo.db"', f'path = "{elsewhere}"'))
    assert text.count("Rooftop rig") == 1 and "port = 9\n" in text and str(elsewhere) in text
    config = tmp_path / "rooftop.toml"
    config.write_text(text)
    data = tmp_path / "demo"
    demo, status = start_demo(data, "--config", str(config), ready=lambda s: s["gpus"],
                              what="the demo on the given config")
    stopped_cleanly(demo, signal.SIGTERM)
    assert status["site_name"] == "Rooftop rig"  # the file's settings, on the demo's port
    assert (data / "sunrig-demo.db").exists() and not elsewhere.exists()


@pytest.mark.parametrize("config, why", [  # why: in lower case, as the error is compared
    ("[markets.sim]\nenabeld = true\n", "markets.sim.enabeld"),
    ("[site]\nname = 'x\n", "not valid toml"),
    (None, "no such file"),
])
def test_demo_with_a_broken_config_exits_2_naming_it(tmp_path, capsys, config, why):
    path = tmp_path / "broken.toml"
    if config is not None:
        path.write_text(config)
    data = tmp_path / "demo"
    assert main(["demo", "--config", str(path), "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and why in err.lower()
    assert not data.exists()  # refused before anything was started or stored


def test_status_without_an_agent_says_so():
    r = subprocess.run([*SUNRIG, "status", "--url", f"http://127.0.0.1:{free_port()}"],
                       capture_output=True, text=True, timeout=HANG_S)
    assert r.returncode == 1 and "cannot reach the agent" in r.stderr


# a config that runs the simulated rig and site in `sunrig run`, as it allows
ALLOWED = "[gpus]\nallow_simulated = true\n[energy]\nallow_simulated = true\n"


def test_startup_failures_are_one_clear_line(tmp_path):
    if not Path("/dev/nvidiactl").exists():  # without a driver NVML cannot start
        nvml = tmp_path / "nvml.toml"
        nvml.write_text(f"[gpus]\nbackend = 'nvml'\n[energy]\nallow_simulated = true\n"
                        f"[store]\npath = '{tmp_path}/s.db'\n")
        r = subprocess.run([*SUNRIG, "run", "--config", str(nvml)], capture_output=True,
                           text=True, timeout=HANG_S)
        assert r.returncode == 1 and "NVML could not start" in r.stderr
        assert "Traceback" not in r.stderr
    data = tmp_path / "data.toml"
    data.write_text(f"{ALLOWED}[energy.simulated]\ndata_file = 'nowhere.csv'\n"
                    f"[store]\npath = '{tmp_path}/s2.db'\n")
    r = subprocess.run([*SUNRIG, "run", "--config", str(data)], capture_output=True, text=True,
                       timeout=HANG_S)
    assert r.returncode == 2 and "nowhere.csv: no such file" in r.stderr
    state = tmp_path / "sim-market.json"
    state.write_text("{broken")  # a corrupt state file is set aside, unless it cannot be:
    for n in range(MAX_SET_ASIDE):  # as many corrupt copies kept as sunrig keeps
        state.with_name(f"{state.name}.corrupt" + (f".{n}" if n else "")).write_text("{")
    market = tmp_path / "market.toml"
    market.write_text(f"{ALLOWED}[markets.sim]\nenabled = true\nallow_simulated = true\n"
                      f"[store]\npath = '{tmp_path}/s3.db'\n")
    r = subprocess.run([*SUNRIG, "run", "--config", str(market)], capture_output=True,
                       text=True, timeout=HANG_S)
    assert r.returncode == 1 and "sim-market.json" in r.stderr and "Traceback" not in r.stderr
    assert state.read_text() == "{broken"  # nothing was lost to a fresh start


def test_run_with_a_broken_config_exits_2(tmp_path):
    cfg = tmp_path / "sunrig.toml"
    cfg.write_text("[markets.sim]\nenabeld = true\n")
    r = subprocess.run([*SUNRIG, "run", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=HANG_S, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 2 and "markets.sim.enabeld" in r.stderr


def test_a_fast_demo_runs_every_job_again_and_again_without_skipped_runs(tmp_path):
    """At 600x the site is polled every 25 ms of real time, less than a poll, a plan's solve or
    a wait for the agent's lock take: each job runs again an interval after its last run ended,
    so the scheduler never finds one still running and skips it with a warning."""
    demo, first = start_demo(tmp_path / "demo", ready=lambda s: s["plan"], what="a plan")
    later = datetime.fromisoformat(first["ts"]) + timedelta(hours=2)

    def ran_since(s: dict, job: str) -> bool:
        last = s["jobs"].get(job, {}).get("last_ok")
        return bool(last) and datetime.fromisoformat(last) > later
    try:
        demo.wait_for(lambda s: all(ran_since(s, j) for j in ("sample_site", "sample_gpus",
                                                                "apply_roles", "plan")),
                      "two simulated hours of every job")
    finally:
        stopped_cleanly(demo, signal.SIGTERM)
    assert "maximum number of running instances" not in demo.log.read_text(), demo.tail()


def kw_figures(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"(\d+\.\d\d) kW", line)]


def test_status_shows_the_battery_site_time_and_power_that_adds_up(tmp_path):
    from node.status import agent_status
    from tests.conftest import make_agent, run_for

    agent, clock = make_agent(tmp_path)
    run_for(agent, clock, hours=3)  # 07:00 CEST: the sun charges the battery
    status = agent_status(agent)
    agent.store.close()
    text = format_status(status)
    first, power_in, power_out = text.splitlines()[:3]
    assert first == "Demo rig, 2024-06-12 09:00 CEST (simulated, 0x real time)"
    assert power_in.startswith("power in: ") and power_out.startswith("power out: ")
    into, out = kw_figures(power_in), kw_figures(power_out)
    assert into[0] == pytest.approx(sum(into[1:]), abs=0.011)  # each side adds up
    assert out[0] == pytest.approx(sum(out[1:]), abs=0.011)
    assert into[0] == pytest.approx(out[0], abs=0.011)  # in is out
    assert "battery charging" in power_out and re.search(r"battery at \d+ %", power_in)
    assert not re.search(r"\d\d:\d\d:\d\d|\+00:00", text)  # no UTC stamps to the microsecond


def test_status_of_a_site_without_a_reading_says_so_instead_of_a_sum():
    status = {"currency": "EUR", "timezone": "Europe/Amsterdam", "site_name": "Rig",
              "ts": "2024-01-01T12:00:00.123456+00:00", "clock_speed": 1, "site": None,
              "rig_power_w": 1500.0, "price": None,
              "roles": {"local": 0, "market": 0, "parked": 0}, "gpus": [], "leases": [],
              "today": {"revenue": 0.0, "energy_cost": 0.0, "net": 0.0},
              "payback": {"capex": 0}, "healthy": True, "jobs": {}}
    lines = format_status(status).splitlines()
    assert lines[:2] == ["Rig, 2024-01-01 13:00 CET",
                         "power: no site reading yet; the rig draws 1.50 kW"]


def test_version_names_the_installed_distribution(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"sunrig {version('sunrig')}"


def test_status_reads_payback_dates_as_the_dashboard_does():
    from node.cli.commands import _payback_line
    young = {"state": "young", "history_days": 3, "date": None, "horizon": "2051-06-01"}
    beyond = {"state": "beyond", "history_days": 90, "date": None, "horizon": "2051-06-01"}
    ok = {"state": "ok", "history_days": None, "date": "2029-03-01", "horizon": "2051-06-01"}
    line = _payback_line({"capex": 484000, "paid_back_pct": 1.5, "pace": young,
                          "simulation": {"outlook": ok}}, "EUR")
    assert line == ("payback: 1.5 % of 484,000 EUR; 2029-03-01 at the simulated year's pace, "
                    "not enough history yet (3 days) at the last 30 days' pace")
    assert "later than 2051 at the last 30 days' pace" in _payback_line(
        {"capex": 1, "paid_back_pct": 0.0, "pace": beyond, "simulation": {}}, "EUR")
    assert _payback_line({"capex": 0}, "EUR") == "payback: no CapEx set"
