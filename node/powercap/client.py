"""The agent's side of power capping when it does not run as root: it asks the root helper.

NVML sets a power limit only for a caller with CAP_SYS_ADMIN (node/powercap/helper.py says
where the driver checks it), and the agent runs as the unprivileged `sunrig` user, so
`NvmlBackend` hands each limit to the helper over its unix socket. The helper checks the UUID's
form and the GPU's own limits but cannot know leases; that check is here, with the caller: a
GPU that holds a lease is never capped below its default (`may_set`).
"""

from __future__ import annotations

import os
import socket

from node.gpus import GpuError
from node.powercap.helper import MAX_REQUEST_BYTES, request_line

TIMEOUT_S = 5.0  # the helper answers at once; NVML's own call is a few milliseconds


class PowercapClient:
    """Asks the helper at `path` to set one GPU's power limit."""

    def __init__(self, path: str, timeout_s: float = TIMEOUT_S):
        self.path, self.timeout_s = path, timeout_s

    def set_power_limit(self, uuid: str, power_w: float) -> float:
        """The limit the helper set (W); GpuError says why it did not."""
        try:
            reply = self._ask(request_line(uuid, power_w))
        except OSError as exc:
            raise GpuError(f"GPU {uuid}: the power-cap helper at {self.path} did not answer: "
                           f"{exc.strerror or exc}; is sunrig-powercap.socket enabled?") from None
        status, _, rest = reply.partition(" ")
        if status == "ok":
            try:
                return float(rest)
            except ValueError:
                pass
        elif status == "error":
            raise GpuError(f"GPU {uuid}: power limit {power_w:.0f} W refused: {rest}")
        raise GpuError(f"GPU {uuid}: the power-cap helper answered {reply[:80]!r}")

    def _ask(self, request: bytes) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout_s)
            sock.connect(self.path)
            sock.sendall(request)
            data = b""
            while len(data) <= MAX_REQUEST_BYTES * 4:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                data += chunk
        return data.decode("ascii", "replace").strip()


def may_set(lease_id: str | None, power_w: float, default_w: float | None) -> bool:
    """Whether the agent may set this limit: never a cap (below the default) on a GPU that
    holds a lease; lifting one back to the default is always allowed."""
    if lease_id is None:
        return True
    return default_w is not None and power_w >= default_w


def client_for(socket_path: str) -> PowercapClient | None:
    """The helper's client where the agent is not root and a socket is configured; as root
    NVML sets limits itself."""
    if not socket_path or os.geteuid() == 0:
        return None
    return PowercapClient(socket_path)
