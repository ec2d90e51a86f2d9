"""The store's schema, as numbered migrations. Never edit an applied one; add the next number.

Timestamps are REAL seconds since the epoch (UTC); `day` columns are the site's local date.

`Migrations` keeps its record where sqlite-utils' migrations keep theirs, in the same table and
columns (sqlite_utils/migrations.py: `_sqlite_migrations`, one row per migration set and name,
unique), so stores made before read as migrated, and either can migrate a store further. It
runs on any database object with `execute` and `atomic`: the store's own, or sqlite-utils'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.storage.store import Database

TABLE = "_sqlite_migrations"


@dataclass(frozen=True)
class Migration:
    name: str
    fn: Callable[[Any], None]


class Migrations:
    """A named set of migrations, applied in the order they were registered."""

    def __init__(self, name: str):
        self.name = name
        self._migrations: list[Migration] = []

    def __call__(self, *, name: str | None = None) -> Callable:
        def register(fn: Callable[[Any], None]) -> Callable[[Any], None]:
            label = name or fn.__name__
            if any(m.name == label for m in self._migrations):
                raise ValueError(f"migration {label!r} is registered twice in {self.name!r}")
            self._migrations.append(Migration(label, fn))
            return fn
        return register

    def applied(self, db: Database) -> list[str]:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      [TABLE]).fetchone() is None:
            return []
        return [r[0] for r in db.execute(f"SELECT name FROM {TABLE} WHERE migration_set = ? "
                                         "ORDER BY rowid", [self.name])]

    def pending(self, db: Database) -> list[Migration]:
        done = set(self.applied(db))
        return [m for m in self._migrations if m.name not in done]

    def apply(self, db: Database) -> None:
        """Each pending migration in one transaction with the record of it."""
        db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} ([id] INTEGER PRIMARY KEY, "
                   "[migration_set] TEXT, [name] TEXT, [applied_at] TEXT)")
        db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS idx_{TABLE}_migration_set_name "
                   f"ON {TABLE} (migration_set, name)")
        for migration in self.pending(db):
            with db.atomic():
                migration.fn(db)
                db.execute(f"INSERT INTO {TABLE} (migration_set, name, applied_at) "
                           "VALUES (?, ?, ?)", [self.name, migration.name,
                                                str(datetime.now(UTC))])


migrations = Migrations("sunrig")


@migrations(name="001_initial")
def m001_initial(db: Database) -> None:
    db.execute("""
        CREATE TABLE site_samples (
            ts REAL PRIMARY KEY, pv_w REAL, load_w REAL, grid_w REAL, battery_w REAL,
            soc_pct REAL, stale INTEGER NOT NULL DEFAULT 0)""")
    db.execute("""
        CREATE TABLE gpu_samples (
            ts REAL NOT NULL, gpu_index INTEGER NOT NULL, uuid TEXT, role TEXT,
            power_w REAL, energy_wh REAL, util_pct REAL, memory_used_bytes INTEGER, temp_c REAL,
            interval_s REAL, interval_energy_wh REAL,
            PRIMARY KEY (ts, gpu_index))""")
    db.execute("""
        CREATE TABLE site_rollups (
            period TEXT NOT NULL, bucket REAL NOT NULL, n INTEGER NOT NULL,
            pv_w REAL, load_w REAL, grid_w REAL, battery_w REAL, soc_pct REAL,
            pv_wh REAL, load_wh REAL, import_wh REAL, export_wh REAL,
            PRIMARY KEY (period, bucket))""")
    db.execute("""
        CREATE TABLE gpu_rollups (
            period TEXT NOT NULL, bucket REAL NOT NULL, gpu_index INTEGER NOT NULL,
            n INTEGER NOT NULL, power_w REAL, util_pct REAL, temp_c_max REAL, energy_wh REAL,
            PRIMARY KEY (period, bucket, gpu_index))""")
    db.execute("""
        CREATE TABLE price_slots (
            start REAL PRIMARY KEY, "end" REAL NOT NULL,
            import_per_kwh REAL NOT NULL, export_per_kwh REAL NOT NULL)""")
    db.execute("""
        CREATE TABLE plans (ts REAL PRIMARY KEY, planner TEXT NOT NULL, note TEXT)""")
    db.execute("""
        CREATE TABLE plan_slots (
            plan_ts REAL NOT NULL REFERENCES plans(ts), start REAL NOT NULL, "end" REAL NOT NULL,
            market TEXT NOT NULL, gpus_offered INTEGER NOT NULL, floor_per_gpu_hour REAL,
            local_gpus INTEGER NOT NULL, parked_power_cap_w REAL, expected_margin REAL,
            PRIMARY KEY (plan_ts, start, market))""")
    db.execute("""
        CREATE TABLE leases (
            market TEXT NOT NULL, lease_id TEXT NOT NULL, gpus INTEGER NOT NULL,
            gpu_indexes TEXT, price_per_gpu_hour REAL NOT NULL, state TEXT NOT NULL,
            started REAL NOT NULL, ended REAL,
            PRIMARY KEY (market, lease_id))""")
    db.execute("""
        CREATE TABLE payouts (
            market TEXT NOT NULL, payout_id TEXT NOT NULL, lease_id TEXT, ts REAL NOT NULL,
            day TEXT NOT NULL, amount REAL NOT NULL, amount_market REAL NOT NULL,
            PRIMARY KEY (market, payout_id))""")
    db.execute("""
        CREATE TABLE energy_bookings (
            bucket REAL NOT NULL, day TEXT NOT NULL, role TEXT NOT NULL, source TEXT NOT NULL,
            energy_wh REAL NOT NULL, cost REAL NOT NULL,
            PRIMARY KEY (bucket, role, source))""")
    db.execute("""
        CREATE TABLE ledger_daily (
            day TEXT NOT NULL, category TEXT NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL,
            energy_wh REAL NOT NULL, amount REAL NOT NULL,
            PRIMARY KEY (day, category, name, source))""")
    db.execute("""
        CREATE TABLE cost_items (
            name TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('capex', 'opex')),
            amount REAL NOT NULL, amount_per_month REAL NOT NULL, date TEXT NOT NULL)""")
    db.execute("""
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
            message TEXT NOT NULL, data TEXT)""")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("CREATE INDEX idx_gpu_samples_gpu_ts ON gpu_samples (gpu_index, ts)")
    db.execute("CREATE INDEX idx_leases_state ON leases (state)")
    db.execute("CREATE INDEX idx_payouts_day ON payouts (day)")
    db.execute("CREATE INDEX idx_events_ts ON events (ts)")


@migrations(name="002_battery_account")
def m002_battery_account(db: Database) -> None:
    """The battery as a source of the rig's energy: what the energy stored in it cost. Bookings
    made before keep their source (pv or grid); from now on the battery is a source of its own."""
    db.execute("""
        CREATE TABLE battery_account (
            id INTEGER PRIMARY KEY CHECK (id = 1), stored_wh REAL NOT NULL, cost REAL NOT NULL)""")


@migrations(name="003_local_inference")
def m003_local_inference(db: Database) -> None:
    """The users of the owner's local inference (keys stored as their SHA-256 only) and what
    each request used. No prompt or completion text has a column: only who, when, which model,
    tokens in and out, latency and status. Local use is valued per day and model at the
    reference price of when it was booked."""
    db.execute("""
        CREATE TABLE inference_users (
            name TEXT PRIMARY KEY, key_sha256 TEXT NOT NULL UNIQUE, created REAL NOT NULL,
            revoked REAL)""")
    db.execute("""
        CREATE TABLE inference_usage (
            id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, day TEXT NOT NULL,
            user TEXT NOT NULL, model TEXT NOT NULL, endpoint TEXT NOT NULL,
            stream INTEGER NOT NULL, status INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
            latency_ms REAL NOT NULL, metered TEXT NOT NULL)""")
    db.execute("CREATE INDEX idx_inference_usage_day ON inference_usage (day, model)")
    db.execute("""
        CREATE TABLE local_value_bookings (
            day TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL, amount REAL NOT NULL,
            PRIMARY KEY (day, model))""")
