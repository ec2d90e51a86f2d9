import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest

from energy.types import SiteSample
from node.cli.commands import main
from node.storage.backup import BackupError, StoreLock, backup, check_backup, restore
from node.storage.store import Store
from tests.conftest import every_migration

T0 = datetime(2024, 6, 12, tzinfo=UTC)


def sample(k: int) -> SiteSample:
    return SiteSample(T0 + timedelta(seconds=k), 1000.0 + k, 500.0, 200.0, None, None)


def count(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM site_samples").fetchone()[0]


def test_backup_is_consistent_while_the_agent_writes(tmp_path):
    store = Store(tmp_path / "live.db")
    stop = threading.Event()

    def writer():
        k = 0
        while not stop.is_set() and k < 20000:
            store.add_site_sample(sample(k))
            k += 1
    t = threading.Thread(target=writer)
    t.start()
    try:
        sizes = [backup(tmp_path / "live.db", tmp_path / f"b{i}.db") for i in range(3)]
    finally:
        stop.set()
        t.join()
    assert all(s > 0 for s in sizes)
    counts = [count(tmp_path / f"b{i}.db") for i in range(3)]
    assert counts == sorted(counts)
    for i in range(3):
        assert check_backup(tmp_path / f"b{i}.db") == every_migration(tmp_path)
    store.close()


def test_restore_replaces_the_store_and_refuses_while_the_agent_runs(tmp_path):
    live = tmp_path / "live.db"
    store = Store(live)
    for k in range(10):
        store.add_site_sample(sample(k))
    backup(live, tmp_path / "b.db")
    for k in range(10, 25):
        store.add_site_sample(sample(k))
    with StoreLock(live), pytest.raises(BackupError, match="another sunrig process"):
        restore(tmp_path / "b.db", live)
    assert count(live) == 25  # untouched
    store.close()
    restore(tmp_path / "b.db", live)
    assert count(live) == 10
    reopened = Store(live)
    assert reopened.latest_ts() == T0 + timedelta(seconds=9)
    reopened.close()


def test_restore_refuses_what_is_not_a_sound_store(tmp_path):
    live = tmp_path / "live.db"
    Store(live).close()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BackupError, match="not a sunrig store"):
        restore(junk, live)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(BackupError, match="not a sunrig store"):
        restore(other, live)
    newer = tmp_path / "newer.db"
    backup(live, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                     "VALUES ('sunrig', '099_future', '2030-01-01')")
    with pytest.raises(BackupError, match="newer sunrig"):
        restore(newer, live)
    with pytest.raises(BackupError, match="no such file"):
        restore(tmp_path / "missing.db", live)
    assert check_backup(live) == every_migration(tmp_path)  # it survived every refusal


def test_one_agent_per_store(tmp_path):
    with StoreLock(tmp_path / "s.db"), pytest.raises(BackupError, match="s.db.lock"):
        StoreLock(tmp_path / "s.db").acquire()
    with StoreLock(tmp_path / "s.db"):  # released and free again
        pass


def test_cli_backup_restore_and_migrate(tmp_path, capsys):
    cfg = tmp_path / "sunrig.toml"
    cfg.write_text(f"[store]\npath = '{tmp_path / 'data' / 'sunrig.db'}'\n")
    assert main(["migrate", "--config", str(cfg)]) == 0
    store = Store(tmp_path / "data" / "sunrig.db")
    store.add_site_sample(sample(1))
    store.close()
    assert main(["backup", str(tmp_path / "b.db"), "--config", str(cfg)]) == 0
    assert main(["restore", str(tmp_path / "b.db"), "--config", str(cfg)]) == 0
    assert count(tmp_path / "data" / "sunrig.db") == 1
    assert main(["restore", str(tmp_path / "nope.db"), "--config", str(cfg)]) == 1
    assert "nope.db: no such file" in capsys.readouterr().err
