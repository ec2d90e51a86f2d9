from datetime import UTC, datetime, timedelta

from energy.types import SiteSample
from node.books.rollups import expire_raw, roll_up
from node.storage.store import Store, epoch

T0 = datetime(2024, 6, 12, 21, 0, tzinfo=UTC)  # 23:00 in Amsterdam: the day turns within 2 h


def test_migrations_apply_once_and_wal_is_on(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    s = Store(path)
    applied = s.query("SELECT name FROM _sqlite_migrations")
    names = [r["name"] for r in applied]
    assert [int(n[:3]) for n in names] == list(range(1, len(names) + 1))  # each once, in order
    assert names[:3] == ["001_initial", "002_battery_account", "003_local_inference"]
    assert s.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
    s.close()


def test_payouts_are_stored_once(store):
    row = {"market": "sim", "payout_id": "a/0", "lease_id": "a", "ts": 1.0, "day": "2024-01-01",
           "amount": 2.0, "amount_market": 2.0}
    assert store.add_payouts([row]) == 1
    assert store.add_payouts([row, {**row, "payout_id": "a/1"}]) == 1
    assert store.query("SELECT count(*) AS n FROM payouts")[0]["n"] == 2


def test_lease_updates_keep_assigned_gpus(store):
    lease = {"market": "sim", "lease_id": "L1", "gpus": 2, "price_per_gpu_hour": 2.0,
             "state": "active", "started": 10.0, "ended": None}
    store.upsert_leases([lease])
    store.assign_lease_gpus("sim", "L1", [5, 3])
    store.upsert_leases([{**lease, "state": "closed", "ended": 99.0}])
    (row,) = store.leases()
    assert row["gpu_indexes"] == [3, 5] and row["state"] == "closed" and row["ended"] == 99.0
    assert store.leases("active") == []


def fill(store: Store, minutes: int, grid_w=lambda k: 1000.0) -> None:
    for k in range(minutes * 6):
        ts = T0 + timedelta(seconds=10 * k)
        store.add_site_sample(SiteSample(ts, 600.0, 400.0, grid_w(k), None, None))
        store.add_gpu_samples([{"ts": epoch(ts), "gpu_index": i, "power_w": 100.0 * (i + 1),
                                "temp_c": 40.0 + i, "util_pct": 50.0} for i in range(2)])


def test_rollups_average_and_integrate(store):
    fill(store, 120, grid_w=lambda k: 1000.0 if k % 2 == 0 else -1000.0)
    roll_up(store, T0 + timedelta(hours=2))
    m1 = store.query("SELECT * FROM site_rollups WHERE period = '1m' ORDER BY bucket")
    assert len(m1) == 120 and m1[0]["n"] == 6 and m1[0]["pv_w"] == 600.0
    q = store.query("SELECT * FROM site_rollups WHERE period = '15m' ORDER BY bucket")
    assert len(q) == 8
    assert abs(q[0]["pv_wh"] - 150.0) < 1e-9  # 600 W for a quarter hour
    assert abs(q[0]["import_wh"] - 125.0) < 1e-9 and abs(q[0]["export_wh"] - 125.0) < 1e-9
    days = store.query("SELECT * FROM site_rollups WHERE period = '1d' ORDER BY bucket")
    assert len(days) == 2  # 23:00-00:00 and 00:00-01:00 local
    assert abs(days[0]["pv_wh"] - 600.0) < 1e-6 and abs(days[1]["pv_wh"] - 600.0) < 1e-6
    gpu_day = store.query("SELECT * FROM gpu_rollups WHERE period = '1d' AND gpu_index = 1")
    assert abs(sum(r["energy_wh"] for r in gpu_day) - 400.0) < 1e-6  # 200 W for 2 h


def test_rollups_are_the_same_when_run_again(store):
    fill(store, 40)
    roll_up(store, T0 + timedelta(minutes=20))
    roll_up(store, T0 + timedelta(minutes=40))
    once = store.query("SELECT * FROM site_rollups ORDER BY period, bucket")
    roll_up(store, T0 + timedelta(minutes=40))
    assert store.query("SELECT * FROM site_rollups ORDER BY period, bucket") == once
    q = [r for r in once if r["period"] == "15m"]
    assert [r["n"] for r in q] == [90, 90, 60]


def test_expiry_keeps_recent_and_unrolled_samples(store):
    fill(store, 30)
    now = T0 + timedelta(days=3)
    assert expire_raw(store, now, retention_days=1) == 0  # nothing rolled up yet: keep all
    roll_up(store, T0 + timedelta(minutes=15))
    expire_raw(store, now, retention_days=1)
    left = store.query("SELECT min(ts) AS first, count(*) AS n FROM site_samples")[0]
    assert left["first"] >= epoch(T0 + timedelta(minutes=15)) and left["n"] == 90


def test_a_store_migrated_by_sqlite_utils_reads_as_migrated_and_the_other_way_round(tmp_path):
    """The record of migrations is sqlite-utils' own table: a store made with its Migrations
    (sqlite_utils/migrations.py) needs nothing more, and one made here needs nothing more
    there."""
    import sqlite3

    import pytest
    from sqlite_utils import Database as UtilsDatabase
    from sqlite_utils.migrations import Migrations as UtilsMigrations

    from node.storage.migrations import migrations

    theirs = UtilsMigrations(migrations.name)
    for m in migrations.pending(UtilsDatabase(memory=True)):
        theirs(name=m.name)(m.fn)
    made_there = tmp_path / "there.db"
    theirs.apply(UtilsDatabase(made_there))
    s = Store(made_there)
    assert migrations.pending(s.db) == [] and s.query("SELECT count(*) AS n FROM leases")
    s.close()
    Store(tmp_path / "here.db").close()
    db = UtilsDatabase(tmp_path / "here.db")
    assert theirs.pending(db) == []
    assert [m.name for m in theirs.applied(db)] == migrations.applied(db)
    with pytest.raises(sqlite3.IntegrityError):  # the same unique record as theirs
        db.execute("INSERT INTO _sqlite_migrations (migration_set, name) VALUES (?, ?)",
                   [migrations.name, "001_initial"])


def test_a_write_outside_a_transaction_is_seen_at_once_and_a_failed_one_leaves_nothing(tmp_path):
    import sqlite3

    import pytest
    s = Store(tmp_path / "s.db")
    other = sqlite3.connect(tmp_path / "s.db")
    s.db.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
    assert other.execute("SELECT value FROM meta WHERE key = 'a'").fetchone() == ("1",)
    with pytest.raises(sqlite3.IntegrityError), s.transaction() as db:
        db["meta"].insert({"key": "b", "value": "2"})
        db["meta"].insert({"key": "c", "value": None})  # NOT NULL: the whole write fails
    assert s.get_meta("b") is None
    with s.transaction() as db:
        db["meta"].insert({"key": "d", "value": "4"})
        with pytest.raises(sqlite3.IntegrityError), db.atomic():  # nested: rolls back alone
            db["meta"].insert({"key": "a", "value": "again"})
    assert s.get_meta("d") == "4" and s.get_meta("a") == "1"
    other.close()
    s.close()


def test_rows_with_different_keys_insert_together_and_missing_ones_are_null(store):
    store.add_inference_usage([
        {"ts": 1.0, "day": "2024-01-01", "user": "u", "model": "m", "endpoint": "chat",
         "stream": 0, "status": 200, "prompt_tokens": 1, "completion_tokens": 2,
         "latency_ms": 3.0, "metered": "exact"},
        {"ts": 2.0, "day": "2024-01-01", "user": "u", "model": "m", "endpoint": "chat",
         "stream": 1, "status": 200, "prompt_tokens": 4, "completion_tokens": 5,
         "latency_ms": 6.0, "metered": "exact", "id": 7}])
    rows = store.query("SELECT id, prompt_tokens FROM inference_usage ORDER BY ts")
    assert [r["prompt_tokens"] for r in rows] == [1, 4] and rows[1]["id"] == 7


def test_the_store_imports_neither_sqlite_utils_nor_pandas():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import sys, node.storage.store; print(sorted("
                          "{'sqlite_utils', 'pandas'} & set(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
