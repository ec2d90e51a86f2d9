"""SIGKILL in the middle of writing loses at most the last sample and never corrupts the store."""

import signal
import sqlite3
import time
from datetime import datetime

import pytest

from node.storage.backup import check_backup
from tests.conftest import every_migration
from tests.demo_process import Demo

pytestmark = pytest.mark.slow


def showing_a_site_sample(status: dict) -> bool:
    return bool(status["site"])


def test_sigkill_while_writing_loses_at_most_the_last_sample(tmp_path):
    data = tmp_path / "demo"
    db = data / "sunrig-demo.db"
    schema = every_migration(tmp_path)
    for kill in range(4):  # bounded: four crashes at different moments
        demo = Demo(data, "--speed", "3000")
        seen = demo.wait_for(showing_a_site_sample, "the demo's first site sample")
        # let it write for a while, a different while each time (at x3000 it writes every few
        # milliseconds), keeping the newest sample it has shown
        writing_since = time.monotonic()
        while time.monotonic() - writing_since < 0.5 + 0.7 * kill:
            now = demo.status()
            seen = now if now and showing_a_site_sample(now) else seen
            time.sleep(0.05)
        demo.stop(signal.SIGKILL)

        assert check_backup(db) == schema  # integrity check and schema intact
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
    demo = Demo(data)
    try:
        started = demo.wait_for(showing_a_site_sample, "a site sample after the crash")
        assert started["healthy"] is True
    finally:
        assert demo.stop() == 0, demo.tail()
