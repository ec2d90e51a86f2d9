"""The root helper that caps GPU power for the unprivileged agent: one narrow command, no more.

NVML refuses nvmlDeviceSetPowerManagementLimit to a caller without CAP_SYS_ADMIN (the driver's
administrator test, kernel-open/nvidia/os-interface.c os_is_administrator -> NV_IS_SUSER ->
capable(CAP_SYS_ADMIN)), and the agent runs as the `sunrig` user. So this tiny server runs as
root under its own hardened unit (systemd/sunrig-powercap.service, socket-activated by
sunrig-powercap.socket: a root-owned socket only the sunrig group may write) and does exactly
one thing:

  request  (one line, ASCII, at most 128 bytes):  set GPU-<uuid> <watts>
  reply    (one line):                            ok <watts now set>   |   error <why>

A UUID must be an NVML GPU UUID (no MIG instance: a limit is the whole GPU's), the watts a plain
decimal within what nvmlDeviceGetPowerManagementLimitConstraints allows for that GPU. Anything
else is refused, as is a request beyond the size or the rate limit. The helper cannot know which
GPU holds a lease: the agent never asks it to cap one (node/powercap/client.py). It imports only the
standard library and, once it serves, pynvml.
"""

from __future__ import annotations

import argparse
import grp
import logging
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sunrig.powercap")

DEFAULT_SOCKET = "/run/sunrig-powercap.sock"
MAX_REQUEST_BYTES = 128
READ_TIMEOUT_S = 2.0  # a client that does not send its line within this is dropped
RATE_BURST = 16  # requests at once: two passes over an 8-GPU rig
RATE_PER_S = 0.5  # then one every 2 s; the agent sets a limit once per role change
# nvmlDeviceGetUUID: "GPU-" and a lower-case 8-4-4-4-12 hex UUID
UUID = re.compile(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
WATTS = re.compile(r"[0-9]{1,5}(\.[0-9]{1,3})?")
SD_LISTEN_FDS_START = 3  # sd_listen_fds(3): the first socket systemd passes


class Refused(Exception):
    """The request is not one the helper carries out; the message says why."""


def request_line(uuid: str, power_w: float) -> bytes:
    """The one request, as the client sends it (milliwatt precision, as NVML takes it)."""
    return f"set {uuid} {power_w:.3f}\n".encode("ascii")


def parse_request(raw: bytes) -> tuple[str, float]:
    """(uuid, watts) from one request line, or Refused naming what is wrong."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise Refused(f"a request is at most {MAX_REQUEST_BYTES} bytes")
    try:
        text = raw.decode("ascii").rstrip("\n")
    except UnicodeDecodeError:
        raise Refused("a request is ASCII text") from None
    parts = text.split(" ")
    if len(parts) != 3 or parts[0] != "set":
        raise Refused("the only request is: set GPU-<uuid> <watts>")
    if not UUID.fullmatch(parts[1]):
        raise Refused("the GPU is not an NVML GPU UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-"
                      "xxxxxxxxxxxx)")
    if not WATTS.fullmatch(parts[2]):
        raise Refused("the power limit is not a plain number of watts such as 350 or 412.5")
    return parts[1], float(parts[2])


class RateLimit:
    """A token bucket: `burst` requests at once, then `per_s` a second."""

    def __init__(self, burst: int = RATE_BURST, per_s: float = RATE_PER_S,
                 clock: Callable[[], float] = time.monotonic):
        self.burst, self.per_s, self.clock = burst, per_s, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> bool:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_s)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def _pynvml() -> Any:
    import pynvml  # only when serving: `--help` and the tests' parsing need no driver

    return pynvml


class Nvml:
    """The two NVML calls the helper needs, on an NVML initialised once."""

    def __init__(self) -> None:
        self.nv = _pynvml()
        self.nv.nvmlInit()

    def set_limit_w(self, uuid: str, power_w: float) -> float:
        """Set the limit within the GPU's constraints; Refused says why not."""
        nv = self.nv
        try:
            handle = nv.nvmlDeviceGetHandleByUUID(uuid)
            least_mw, most_mw = nv.nvmlDeviceGetPowerManagementLimitConstraints(handle)
        except nv.NVMLError as exc:
            raise Refused(f"no such GPU or it cannot be read: {exc}") from None
        power_mw = round(power_w * 1000)
        if not least_mw <= power_mw <= most_mw:
            raise Refused(f"{power_w:g} W is outside this GPU's {least_mw / 1000:g}.."
                          f"{most_mw / 1000:g} W")
        try:
            nv.nvmlDeviceSetPowerManagementLimit(handle, power_mw)
        except nv.NVMLError as exc:
            raise Refused(f"NVML refused the limit: {exc}") from None
        return power_mw / 1000


def peer_ids(conn: socket.socket) -> tuple[int, int]:
    """(uid, gid) of the process at the other end (SO_PEERCRED: the kernel's word, not its)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, gid = struct.unpack("3i", creds)
    return uid, gid


class Helper:
    """Serves one request per connection, one connection at a time."""

    def __init__(self, nvml: Nvml, allowed_gid: int, rate: RateLimit | None = None):
        self.nvml, self.allowed_gid = nvml, allowed_gid
        self.rate = rate or RateLimit()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(READ_TIMEOUT_S)
        try:
            reply = self._answer(conn)
            conn.sendall(reply.encode("ascii", "replace") + b"\n")
        except OSError:  # the client went away or was too slow: nothing to answer
            pass
        finally:
            conn.close()

    def _answer(self, conn: socket.socket) -> str:
        uid, gid = peer_ids(conn)
        try:
            line = _read_line(conn)  # read first: a reply to an unread request is lost
            # the socket's mode already keeps others out; this holds even if it were loosened
            if uid != 0 and gid != self.allowed_gid:
                log.warning("powercap: refused uid %d gid %d, not of the allowed group", uid,
                            gid)
                return "error not allowed: only the sunrig group may ask"
            if not self.rate.take():
                return "error too many requests: try again in a few seconds"
            uuid, power_w = parse_request(line)
            done_w = self.nvml.set_limit_w(uuid, power_w)
        except Refused as exc:
            log.info("powercap: refused: %s", exc)
            return f"error {' '.join(str(exc).split())[:200]}"
        log.info("powercap: %s power limit set to %.0f W", uuid, done_w)
        return f"ok {done_w:g}"

    def serve(self, listener: socket.socket, stop: threading.Event) -> None:
        """Accept until `stop` is set (checked every second)."""
        listener.settimeout(1.0)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            self.handle(conn)


def _read_line(conn: socket.socket) -> bytes:
    """One line of at most MAX_REQUEST_BYTES within READ_TIMEOUT_S in all (a byte at a time
    cannot hold the helper longer); more, or no newline before EOF, is refused."""
    data = b""
    deadline = time.monotonic() + READ_TIMEOUT_S
    while b"\n" not in data:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise TimeoutError("the request took too long")
        conn.settimeout(left_s)
        chunk = conn.recv(MAX_REQUEST_BYTES + 1 - len(data))
        if not chunk:
            raise Refused("a request is one line ending in a newline")
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise Refused(f"a request is at most {MAX_REQUEST_BYTES} bytes")
    line, _, rest = data.partition(b"\n")
    if rest:
        raise Refused("one request per connection")
    return line


def listener(path: str) -> socket.socket:
    """The socket systemd passed (socket activation), else one bound at `path` (0600: only
    root, for running by hand)."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1":
        return socket.socket(fileno=SD_LISTEN_FDS_START)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(8)
    return sock


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sunrig-powercap",
                                 description="Set GPU power limits for the sunrig agent.")
    ap.add_argument("--socket", default=DEFAULT_SOCKET, help="used without socket activation")
    ap.add_argument("--group", default="sunrig", help="the group allowed to ask")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        gid = grp.getgrnam(args.group).gr_gid
    except KeyError:
        print(f"sunrig-powercap: no group {args.group!r}", file=sys.stderr)
        return 2
    try:
        nvml = Nvml()
    except Exception as exc:  # noqa: BLE001 - pynvml's errors, or no NVIDIA library at all
        print(f"sunrig-powercap: NVML could not start: {exc}", file=sys.stderr)
        return 1
    Helper(nvml, gid).serve(listener(args.socket), threading.Event())
    return 0


if __name__ == "__main__":
    sys.exit(main())
