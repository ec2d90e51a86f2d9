"""A real mosquitto broker for tests, on 127.0.0.1 and a free port, that can be restarted."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from tests.conftest import HANG_S, wait_until


class Broker:
    def __init__(self, workdir: Path):
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed: run 'make test', which installs it")
        self.exe = exe
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             "persistence false\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._listening, "mosquitto listening", poll_s=0.05)
        return self

    def _listening(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, \
            f"mosquitto exited with {self.proc.returncode} on port {self.port}"
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=HANG_S)
            self.proc = None
