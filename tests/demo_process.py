"""A `sunrig demo` in a process of its own for tests: its log goes to a file (a pipe nobody
reads would block it once full) and is shown when the demo dies or does not stop."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import HANG_S, ROOT, wait_until
from tests.test_cli import free_port, get_status


class Demo:
    """Starts at once; `wait_for` a status, `stop` with a signal."""

    def __init__(self, data_dir: Path, *args: str, short_year: bool = False,
                 env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.with_name(data_dir.name + ".log")
        module = "tests.short_year_demo" if short_year else "node.cli"
        command = [sys.executable, "-m", module, *([] if short_year else ["demo"])]
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [*command, "--port", str(self.port), "--data-dir", str(data_dir), *args],
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
