"""A `sunrig demo` in a process of its own for tests: its log goes to a file (a pipe nobody
reads would block it once full) and is shown when the demo dies or does not stop."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.conftest import HANG_S, ROOT, wait_until
from tests.short_year_demo import short_year_config

# An answer from a live local dashboard: a busy machine may take seconds; one that does not come
# only means asking again, so this is no test of how fast it answers.
STATUS_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_status(port: int) -> dict | None:
    """The agent's status on 127.0.0.1:`port`, None while nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status",
                                    timeout=STATUS_TIMEOUT_S) as r:
            return json.load(r)
    except OSError:
        return None


class Demo:
    """Starts at once; `wait_for` a status, `stop` with a signal. `short_year`: the embedded
    default with a week to simulate for the payback page, at the agent's priority."""

    def __init__(self, data_dir: Path, *args: str, short_year: bool = False,
                 env: dict[str, str] | None = None):
        self.port = free_port()
        # the local inference gateway's port, asked of the system too: the demo's default (the
        # dashboard's port + 1) may be taken by anything else running on the machine
        self.local_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.with_name(data_dir.name + ".log")
        if short_year:
            config = short_year_config(data_dir.with_name(data_dir.name + ".short-year.toml"))
            command = [sys.executable, "-m", "tests.short_year_demo", "--config", str(config)]
        else:
            command = [sys.executable, "-m", "node.cli", "demo"]
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [*command, "--port", str(self.port), "--local-port", str(self.local_port),
                 "--data-dir", str(data_dir), *args],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def status(self) -> dict | None:
        """The status, None while it does not answer; fails at once if the demo has exited."""
        code = self.proc.poll()
        assert code is None, f"the demo exited with {code}; its log ends:\n{self.tail()}"
        return get_status(self.port)

    def wait_for(self, ok: Callable[[dict], object], what: str) -> dict:
        """The first status for which `ok` holds, however long the machine takes to get there."""
        return wait_until(lambda: (s := self.status()) and ok(s) and s, what, poll_s=0.3)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig`, wait for the exit and return its code; kills it if it hangs."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the demo did not stop after {sig!r}; its log ends:\n"
                                 f"{self.tail()}") from None
