"""systemd/install.sh into a temporary root, and the units through systemd-analyze."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import load_config
from node.wiring import still_needs
from tests.conftest import HANG_S, wait_until
from tests.test_cli import free_port, get_status

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "systemd" / "install.sh"
# an install builds a venv and installs every dependency into it: the slowest thing awaited here
INSTALL_HANG_S = 3 * HANG_S


def install(prefix: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), "--prefix", str(prefix), "--python",
                           sys.executable, *args], capture_output=True, text=True,
                          timeout=INSTALL_HANG_S)


def verify(unit: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "make test installs systemd for systemd-analyze"
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                       timeout=HANG_S)
    about_unit = [line for line in (r.stdout + r.stderr).splitlines() if unit.name in line]
    assert r.returncode == 0 and about_unit == [], r.stdout + r.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    r = install(tmp_path / "root", "--dry-run")
    assert r.returncode == 0, r.stderr
    plan = r.stdout
    assert f"write {tmp_path}/root/etc/sunrig/sunrig.toml (mode 0640)" in plan
    assert f"write {tmp_path}/root/etc/systemd/system/sunrig.service" in plan
    for helper in ("sunrig-powercap.socket", "sunrig-powercap.service"):
        assert f"write {tmp_path}/root/etc/systemd/system/{helper} (mode 0644)" in plan
    assert "-m venv" in plan and "sunrig migrate" in plan
    assert "systemctl" not in plan and "useradd" not in plan  # not outside a real root
    assert not (tmp_path / "root").exists()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A first install into an empty root: the starter config is written and checked."""
    root = tmp_path_factory.mktemp("stage")
    r = install(root)
    assert r.returncode == 0, r.stdout + r.stderr
    return root, r


def test_a_fresh_install_writes_the_starter_and_it_passes_config_check(fresh):
    root, r = fresh
    config = root / "etc" / "sunrig" / "sunrig.toml"
    example = (ROOT / "sunrig.example.toml").read_text()
    assert config.read_text().startswith(example)  # the documented starter, as it is
    assert oct(config.stat().st_mode & 0o777) == "0o640"
    cfg = load_config(config)
    assert cfg.store.path == str(root / "var" / "lib" / "sunrig" / "sunrig.db")  # the prefix's
    assert cfg.gpus.backend == "nvml" and cfg.energy.source == "none"
    # install.sh ran `sunrig config check` on it: it passed, naming what it still needs
    assert f"{config}: ok" in r.stdout and "still needs configuring:" in r.stdout
    assert "SIMULATED" not in r.stdout + r.stderr
    checked = subprocess.run([str(root / "opt" / "sunrig" / "venv" / "bin" / "sunrig"), "config",
                              "check", str(config)], capture_output=True, text=True,
                             timeout=HANG_S)
    assert checked.returncode == 0, checked.stderr
    assert [line for line in checked.stdout.splitlines() if line.startswith("  - ")] == [
        f"  - {need}" for need in still_needs(cfg)]


@pytest.fixture(scope="module")
def staged(fresh):
    root, _ = fresh
    etc = root / "etc" / "sunrig"
    config = etc / "sunrig.toml"  # the owner's config, already there: it must be kept
    config.write_text(
        "[site]\nname = 'Staged rig'\ntimezone = 'Europe/Amsterdam'\n"
        "[gpus]\nbackend = 'simulated'\nallow_simulated = true\n"
        "[energy]\nallow_simulated = true\n[tariff]\nreplay = true\n"
        f"[store]\npath = '{root}/var/lib/sunrig/sunrig.db'\n"
        f"[webui]\nport = {free_port()}\n")
    r = install(root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"keep: {config}" in r.stdout
    return root


def test_install_lays_out_program_config_data_and_unit(staged):
    unit = staged / "etc" / "systemd" / "system" / "sunrig.service"
    text = unit.read_text()
    assert f"ExecStart={staged}/opt/sunrig/venv/bin/sunrig run --config " \
           f"{staged}/etc/sunrig/sunrig.toml" in text
    assert "Type=notify" in text and "WatchdogSec=" in text and "User=sunrig" in text
    assert (staged / "var" / "lib" / "sunrig" / "sunrig.db").is_file()  # migrated
    assert (staged / "opt" / "sunrig" / "sunrig.example.toml").is_file()
    verify(unit)


def test_install_lays_out_the_power_cap_helper_hardened_and_socket_activated(staged):
    units = staged / "etc" / "systemd" / "system"
    service = (units / "sunrig-powercap.service").read_text()
    assert f"ExecStart={staged}/opt/sunrig/venv/bin/python -I -m node.powercap.helper " \
           "--group sunrig" in service
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateNetwork=yes",
                 "CapabilityBoundingSet=CAP_SYS_ADMIN", "DevicePolicy=closed",
                 "DeviceAllow=char-nvidia-frontend rw"):
        assert line in service.splitlines()
    assert [d for d in service.splitlines() if d.startswith("DeviceAllow=")] == [
        "DeviceAllow=char-nvidia-frontend rw"]  # the NVIDIA devices and nothing else
    socket_unit = (units / "sunrig-powercap.socket").read_text().splitlines()
    assert {"SocketUser=root", "SocketGroup=sunrig", "SocketMode=0660"} <= set(socket_unit)
    verify(units / "sunrig-powercap.service")
    verify(units / "sunrig-powercap.socket")


def test_the_service_runs_in_that_layout(staged):
    config = staged / "etc" / "sunrig" / "sunrig.toml"
    port = int(config.read_text().split("port = ")[1].split()[0])
    proc = subprocess.Popen([str(staged / "opt" / "sunrig" / "venv" / "bin" / "sunrig"), "run",
                             "--config", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd="/")
    def serving():
        assert proc.poll() is None, f"the service exited: {proc.stderr.read()[-3000:]}"
        return get_status(port)
    try:
        status = wait_until(serving, "the installed service answering", poll_s=0.3)
        assert status["site_name"] == "Staged rig" and len(status["gpus"]) == 8
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 0, err


def test_upgrade_keeps_config_and_data_then_uninstall_keeps_them_unless_purged(staged):
    config = staged / "etc" / "sunrig" / "sunrig.toml"
    db = staged / "var" / "lib" / "sunrig" / "sunrig.db"
    before = config.read_text()
    with sqlite3.connect(db) as conn:
        samples = conn.execute("SELECT count(*) FROM site_samples").fetchone()[0]
    old_wrapper = staged / "opt" / "sunrig" / "bin" / "akash-bid-price"  # an earlier version's
    old_wrapper.parent.mkdir(parents=True, exist_ok=True)
    old_wrapper.write_text("#!/bin/sh\nexec python -m market_adapter.akash_bid\n")
    r = install(staged)
    assert r.returncode == 0, r.stderr
    assert config.read_text() == before
    assert not old_wrapper.exists()  # the provider's container could never run it
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM site_samples").fetchone()[0] == samples

    r = install(staged, "--uninstall")
    assert r.returncode == 0 and "kept" in r.stdout
    assert not (staged / "opt" / "sunrig").exists()
    assert not (staged / "etc" / "systemd" / "system" / "sunrig.service").exists()
    assert not list((staged / "etc" / "systemd" / "system").glob("sunrig-powercap.*"))
    assert config.exists() and db.exists()
    r = install(staged, "--uninstall", "--purge")
    assert r.returncode == 0 and not config.exists() and not db.exists()


def test_every_shipped_unit_verifies(tmp_path):
    units = sorted((ROOT / "systemd").glob("*.service")) + sorted(
        (ROOT / "systemd").glob("*.socket"))
    for unit in units:  # the same units, their programs pointed at one that exists
        text = unit.read_text()
        for program in ("/opt/sunrig/venv/bin/sunrig", "/opt/sunrig/venv/bin/python"):
            text = text.replace(program, os.path.realpath(sys.executable))
        (tmp_path / unit.name).write_text(text)
    for unit in units:
        verify(tmp_path / unit.name)
