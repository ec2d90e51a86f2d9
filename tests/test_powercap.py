"""The root power-cap helper over a real unix socket, NVML faked as tests/test_gpus.py fakes it
(pynvml's own functions replaced, so the helper runs its real calls), and the agent's client."""

import grp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from node.gpus import GpuError, NvmlBackend
from node.powercap import helper as powercap_helper
from node.powercap.client import PowercapClient, may_set
from node.powercap.helper import (
    MAX_REQUEST_BYTES,
    Helper,
    Nvml,
    RateLimit,
    Refused,
    listener,
    parse_request,
    request_line,
)
from tests.conftest import HANG_S, wait_until
from tests.test_gpus import nvml  # noqa: F401 - the fixture: two H100s, 200..700 W
from tests.test_podresources import as_user

GPU0 = "GPU-8d3e1c2a-0000-4f00-9a00-000000000000"
GPU1 = "GPU-8d3e1c2a-0000-4f00-9a00-000000000001"
ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture
def serve(nvml):  # noqa: F811
    """Start the helper on a socket in a fresh directory; yields a function making one."""
    started = []

    def start(rate=None, allowed_gid=None, mode=0o600):
        where = Path(tempfile.mkdtemp(prefix="powercap-"))
        path = where / "powercap.sock"
        sock = listener(str(path))
        os.chmod(path, mode)
        helper = Helper(Nvml(), os.getgid() if allowed_gid is None else allowed_gid, rate)
        stop = threading.Event()
        thread = threading.Thread(target=helper.serve, args=(sock, stop), daemon=True)
        thread.start()
        started.append((stop, thread, sock, where))
        return str(path)

    yield start
    for stop, thread, sock, where in started:
        stop.set()
        thread.join(HANG_S)
        sock.close()
        for f in where.iterdir():
            f.unlink()
        where.rmdir()


def ask_raw(path: str, data: bytes) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(HANG_S)
        s.connect(path)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return s.recv(4096).decode()


def test_the_helper_sets_a_limit_within_the_gpus_constraints(serve, nvml):  # noqa: F811
    path = serve()
    assert PowercapClient(path).set_power_limit(GPU1, 350.0) == 350.0
    assert nvml.calls["set_limit"] == [(1, 350000)]  # NVML takes milliwatts


def test_a_limit_outside_the_constraints_is_refused_and_nothing_set(serve, nvml):  # noqa: F811
    path = serve()
    for watts in (150.0, 700.5):
        with pytest.raises(GpuError, match=r"outside this GPU's 200\.\.700 W"):
            PowercapClient(path).set_power_limit(GPU0, watts)
    assert nvml.calls["set_limit"] == []


def test_a_gpu_nvml_does_not_know_is_refused(serve, nvml):  # noqa: F811
    path = serve()
    with pytest.raises(GpuError, match="no such GPU"):
        PowercapClient(path).set_power_limit("GPU-00000000-0000-4000-8000-000000000000", 300.0)
    assert nvml.calls["set_limit"] == []


@pytest.mark.parametrize("request_bytes, why", [
    (b"get " + GPU0.encode() + b" 300\n", "the only request is"),
    (b"set " + GPU0.encode() + b" 300 now\n", "the only request is"),
    (b"set MIG-8d3e1c2a-0000-4f00-9a00-000000000000 300\n", "not an NVML GPU UUID"),
    (b"set GPU-8D3E1C2A-0000-4F00-9A00-000000000000 300\n", "not an NVML GPU UUID"),
    (b"set " + GPU0.encode() + b" 3e2\n", "not a plain number"),
    (b"set " + GPU0.encode() + b" -300\n", "not a plain number"),
    (b"set " + GPU0.encode() + b" nan\n", "not a plain number"),
    (b"set " + GPU0.encode() + b" 300", "one line ending in a newline"),
    (b"set " + GPU0.encode() + b" 300\nset " + GPU1.encode() + b" 300\n", "one request"),
    (b"set \xff\n", "ASCII"),
    (b"x" * (MAX_REQUEST_BYTES + 1), f"at most {MAX_REQUEST_BYTES} bytes"),
    (b"x" * 4096, f"at most {MAX_REQUEST_BYTES} bytes"),
])
def test_anything_but_the_one_command_is_refused(serve, nvml, request_bytes, why):  # noqa: F811
    path = serve()
    reply = ask_raw(path, request_bytes)
    assert reply.startswith("error ") and why in reply, reply
    assert nvml.calls["set_limit"] == []


def test_a_flood_is_refused_beyond_the_rate_and_served_again_later(serve, nvml):  # noqa: F811
    clock = FakeClock()
    path = serve(rate=RateLimit(burst=3, per_s=0.5, clock=clock))
    client = PowercapClient(path)
    for _ in range(3):
        client.set_power_limit(GPU0, 300.0)
    for _ in range(5):  # bounded: a few past the burst
        with pytest.raises(GpuError, match="too many requests"):
            client.set_power_limit(GPU0, 300.0)
    clock.t += 2.0  # one token back
    assert client.set_power_limit(GPU0, 310.0) == 310.0
    assert len(nvml.calls["set_limit"]) == 4


def test_a_client_that_sends_nothing_is_dropped_and_the_next_served(serve, nvml, monkeypatch):  # noqa: F811
    monkeypatch.setattr(powercap_helper, "READ_TIMEOUT_S", 0.2)
    path = serve()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.connect(path)  # connects and stays silent
        assert PowercapClient(path).set_power_limit(GPU0, 400.0) == 400.0
    assert nvml.calls["set_limit"] == [(0, 400000)]


def test_the_nvml_backend_asks_the_helper_when_it_is_given_one(serve, nvml):  # noqa: F811
    path = serve()
    NvmlBackend(PowercapClient(path)).set_power_limit(1, 275.0)
    assert nvml.calls["set_limit"] == [(1, 275000)]
    with pytest.raises(GpuError, match="refused"):
        NvmlBackend(PowercapClient(path)).set_power_limit(1, 50.0)


def test_a_helper_that_is_not_there_is_a_gpu_error_naming_the_socket(tmp_path):
    missing = str(tmp_path / "none.sock")
    with pytest.raises(GpuError, match=f"helper at {missing} did not answer"):
        PowercapClient(missing).set_power_limit(GPU0, 300.0)


def test_a_gpu_that_holds_a_lease_is_never_capped_only_restored():
    assert may_set(None, 200.0, 700.0)  # a parked GPU: capped
    assert not may_set("akash/1/1/1", 200.0, 700.0)
    assert may_set("akash/1/1/1", 700.0, 700.0)  # back to its default: a lease runs uncapped
    assert not may_set("akash/1/1/1", 700.0, None)  # no default known: leave it alone


def test_parse_request_reads_the_one_command():
    assert parse_request(b"set " + GPU0.encode() + b" 412.5") == (GPU0, 412.5)
    with pytest.raises(Refused):
        parse_request(b"set " + GPU0.encode() + b" 412.5 ")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to ask as another user")
def test_only_the_allowed_group_may_ask_socket_mode_and_peer_check_both(serve, nvml):  # noqa: F811
    nobody = 65534
    line = b"set " + GPU0.encode() + b" 300\n"
    closed = serve()
    os.chmod(Path(closed).parent, 0o755)
    assert "Permission denied" in as_user(nobody, ask_raw, closed, line)  # 0600 root socket
    loosened = serve(allowed_gid=os.getgid() + 4242, mode=0o666)
    os.chmod(Path(loosened).parent, 0o755)
    assert "only the sunrig group may ask" in as_user(nobody, ask_raw, loosened, line)
    assert nvml.calls["set_limit"] == []


def test_the_helper_refuses_to_start_for_a_group_that_does_not_exist(capsys):
    assert powercap_helper.main(["--group", "no-such-group-sunrig"]) == 2
    assert "no group 'no-such-group-sunrig'" in capsys.readouterr().err


# The helper as systemd starts it: systemd-socket-activate listens, as sunrig-powercap.socket
# does, and on the first connection starts the helper with the socket as fd 3 (LISTEN_FDS=1).
# NVML inside that process is the same fake, set up before main() runs.
SOCKET_ACTIVATED = """
import grp, os, sys
import pynvml
from tests.test_gpus import fake_nvml
calls = {"set_limit": []}
for name, fn in fake_nvml(set(), calls).items():
    setattr(pynvml, name, fn)
pynvml.nvmlDeviceSetPowerManagementLimit = lambda h, mw: print("set", h, mw, flush=True)
from node.powercap.helper import main
sys.exit(main(["--group", grp.getgrgid(os.getgid()).gr_name, "--socket", "/nonexistent"]))
"""


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate is systemd's own tool")
def test_the_helper_serves_the_socket_systemd_passes_it(tmp_path):
    path = tmp_path / "powercap.sock"
    proc = subprocess.Popen([shutil.which("systemd-socket-activate"), "-l", str(path), "--",
                             sys.executable, "-c", SOCKET_ACTIVATED], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(path.exists, "systemd-socket-activate listening")
        assert PowercapClient(str(path)).set_power_limit(GPU0, 320.0) == 320.0
        with pytest.raises(GpuError, match="outside this GPU's 200..700 W"):
            PowercapClient(str(path)).set_power_limit(GPU1, 900.0)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=HANG_S)
    assert out.splitlines() == ["set 0 320000"], err  # NVML asked once, in milliwatts
    assert "power limit set to 320 W" in err


def test_the_helper_exits_with_a_clear_error_where_nvml_cannot_start(monkeypatch, capsys):
    import pynvml

    def no_driver():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    group = grp.getgrgid(os.getgid()).gr_name
    assert powercap_helper.main(["--group", group]) == 1
    assert "NVML could not start" in capsys.readouterr().err


def test_a_client_that_trickles_its_request_is_dropped_within_the_read_time(serve, nvml,  # noqa: F811
                                                                            monkeypatch):
    monkeypatch.setattr(powercap_helper, "READ_TIMEOUT_S", 0.5)
    path = serve()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
        slow.settimeout(HANG_S)
        slow.connect(path)
        sent = 0
        for byte in request_line(GPU0, 300.0)[:-1]:  # bounded: one line, without its newline
            try:
                slow.send(bytes([byte]))
            except OSError:  # dropped: the helper closed the connection
                break
            sent += 1
            time.sleep(0.1)
        assert slow.recv(100) == b""  # closed without a reply, and nothing was set
    assert sent < len(request_line(GPU0, 300.0)) - 1
    assert nvml.calls["set_limit"] == []
    assert PowercapClient(path).set_power_limit(GPU0, 300.0) == 300.0  # the next is served
