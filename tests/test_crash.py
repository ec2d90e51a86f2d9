"""SIGKILL in the middle of writing loses at most the last sample and never corrupts the store."""

import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime

import pytest

from node.backup import check_backup
from tests.test_cli import free_port
from tests.test_cli import get_status as status

pytestmark = pytest.mark.slow


def test_sigkill_while_writing_loses_at_most_the_last_sample(tmp_path):
    data = tmp_path / "demo"
    db = data / "sunrig-demo.db"
    for kill in range(4):  # bounded: four crashes at different moments
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "node.cli", "demo", "--speed", "3000",
                                 "--port", str(port), "--data-dir", str(data)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started, seen = time.monotonic(), None
        run_for_s = 1.5 + 0.7 * kill  # kill at a different moment each time
        while time.monotonic() - started < 60:  # at x3000 it writes every few milliseconds
            s = status(port)
            if s and s["site"]:
                seen = s
                if time.monotonic() - started > run_for_s:
                    break
            time.sleep(0.05)
        assert seen, proc.stderr.read() if proc.poll() is not None else "no status"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

        assert check_backup(db) == ["001_initial"]  # integrity check and schema intact
        with sqlite3.connect(db) as conn:
            last = conn.execute("SELECT max(ts) FROM site_samples").fetchone()[0]
            booked = conn.execute("SELECT round(sum(energy_wh), 6) FROM energy_bookings"
                                  ).fetchone()[0]
            daily = conn.execute("SELECT round(sum(energy_wh), 6) FROM ledger_daily "
                                 "WHERE category = 'energy'").fetchone()[0]
        # every sample the agent had shown before the kill was on disk
        assert last >= datetime.fromisoformat(seen["site"]["ts"]).timestamp()
        assert booked == daily  # the ledger never half-written
    # and the agent starts again on the crashed store
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "node.cli", "demo", "--port", str(port),
                             "--data-dir", str(data)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (status(port) or {}).get("site"):
            time.sleep(0.1)
        assert (status(port) or {}).get("healthy") is True
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
