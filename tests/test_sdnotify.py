import contextlib
import os
import socket
import time

import pytest

from market_adapter.base import MarketError
from node.sdnotify import notify, watchdog_period_s
from tests.conftest import HANG_S, make_agent
from tests.demo_process import Demo


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.5)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


def receive_until(sock, enough, service: Demo) -> list[str]:
    """Messages until `enough(messages)` holds; fails if the service exits first or hangs."""
    out, deadline = [], time.monotonic() + HANG_S
    while not enough(out):
        assert service.proc.poll() is None, f"the service exited: {out}\n{service.tail()}"
        assert time.monotonic() < deadline, f"not after {HANG_S:.0f} s: {out}"
        with contextlib.suppress(TimeoutError):
            out.append(sock.recv(4096).decode())
    return out


def drain(sock) -> list[str]:
    """What is left on the socket once its sender has exited."""
    out = []
    with contextlib.suppress(TimeoutError):
        while True:
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
    demo = Demo(tmp_path / "d", env={**os.environ, "WATCHDOG_USEC": "400000"})
    try:  # fed again and again, however long the machine takes to get there
        messages = receive_until(notify_socket, lambda m: m.count("WATCHDOG=1") >= 5, demo)
    finally:
        assert demo.stop() == 0, demo.tail()
    messages += drain(notify_socket)
    assert messages[0].startswith("READY=1")
    assert messages[-1] == "STOPPING=1"
