from datetime import UTC, datetime, timedelta

from energy.types import SiteSample
from node.rollups import expire_raw, roll_up
from node.store import Store, epoch

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
