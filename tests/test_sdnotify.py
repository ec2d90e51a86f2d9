import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from market_adapter.base import MarketError
from node.sdnotify import notify, watchdog_period_s
from tests.conftest import make_agent
from tests.test_cli import free_port


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.5)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


def received(sock, seconds: float) -> list[str]:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            out.append(sock.recv(4096).decode())
    return out


def test_notify_reaches_the_socket_and_is_a_no_op_outside_systemd(notify_socket, monkeypatch):
    assert notify("READY=1")
    assert notify_socket.recv(100) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert notify("READY=1") is False


def test_watchdog_period_is_half_the_timeout_and_only_for_us(monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_period_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert watchdog_period_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_period_s() is None


def test_watchdog_ignores_the_outside_world_but_not_our_own_failures(tmp_path):
    agent, clock = make_agent(tmp_path)
    assert not agent.watchdog_ok()  # nothing has run yet
    agent.run_all_once()
    assert agent.watchdog_ok()
    def market_down():
        raise MarketError("sim: connection refused")
    agent.jobs["sync_markets"] = (market_down, agent.jobs["sync_markets"][1])
    agent.run_all_once()
    assert not agent.healthy() and agent.watchdog_ok()  # stale, but a restart would not help

    def bug():
        raise KeyError("gpu_index")
    agent.jobs["ledger"] = (bug, agent.jobs["ledger"][1])
    agent.run_all_once()
    assert not agent.watchdog_ok()
    agent.store.close()


def test_the_service_says_ready_feeds_the_watchdog_and_says_stopping(notify_socket, tmp_path):
    env = {**os.environ, "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen([sys.executable, "-m", "node.cli", "demo", "--port", str(free_port()),
                             "--data-dir", str(tmp_path / "d")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        messages = received(notify_socket, 6.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    messages += received(notify_socket, 1.0)
    assert messages[0].startswith("READY=1")
    assert messages.count("WATCHDOG=1") >= 5
    assert messages[-1] == "STOPPING=1"
