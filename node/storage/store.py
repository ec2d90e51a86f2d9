"""SQLite store (WAL): samples, prices, plans, leases, payouts, ledger and events.

One connection guarded by one lock, shared by the scheduler's jobs and the web server's threads.
Writes that come from outside (leases, payouts) are keyed by their market's ids, so syncing the
same data twice stores it once.

`Database` is the little of sqlite-utils' Database the store uses, on sqlite3 alone: importing
sqlite-utils imports pandas (a second and some 40 MiB in the agent for nothing it uses). It keeps
sqlite-utils' behaviour: a write outside `atomic()` commits at once, a nested `atomic()` is a
savepoint, and `query` yields rows as dicts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from itertools import chain
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from energy.redact import redact
from node.storage.migrations import migrations


class Database:
    """A sqlite3 connection in autocommit mode, with transactions only where `atomic` opens
    them (the driver opens none of its own)."""

    def __init__(self, conn: sqlite3.Connection):
        conn.isolation_level = None
        self.conn = conn

    def execute(self, sql: str, params: Iterable[Any] | dict | None = None) -> sqlite3.Cursor:
        return self.conn.execute(sql, () if params is None else params)

    def query(self, sql: str, params: Iterable[Any] | dict | None = None) -> Iterator[dict]:
        cursor = self.execute(sql, params)
        keys = [d[0] for d in cursor.description or ()]
        return (dict(zip(keys, row, strict=True)) for row in cursor)

    @contextmanager
    def atomic(self) -> Iterator[Database]:
        """One transaction; inside another, a savepoint that rolls back alone."""
        if self.conn.in_transaction:
            self.conn.execute("SAVEPOINT nested")
            try:
                yield self
            except BaseException:
                if self.conn.in_transaction:  # a failed COMMIT trigger may have ended it
                    self.conn.execute("ROLLBACK TO SAVEPOINT nested")
                    self.conn.execute("RELEASE SAVEPOINT nested")
                raise
            self.conn.execute("RELEASE SAVEPOINT nested")
            return
        self.conn.execute("BEGIN")
        try:
            yield self
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def __getitem__(self, table: str) -> Table:
        return Table(self, table)

    def enable_wal(self) -> None:
        self.conn.execute("PRAGMA journal_mode=wal")

    def close(self) -> None:
        self.conn.close()


class Table:
    """Inserts of rows given as dicts into an existing table (the migrations make them all)."""

    def __init__(self, db: Database, name: str):
        self.db, self.name = db, name

    def insert(self, row: dict, replace: bool = False, ignore: bool = False) -> None:
        self.insert_all([row], replace=replace, ignore=ignore)

    def insert_all(self, rows: Iterable[dict], pk: str | None = None, replace: bool = False,
                   ignore: bool = False) -> None:
        """`pk` is what sqlite-utils would create a missing table with; the tables exist."""
        rows = list(rows)
        if not rows:
            return
        columns = list(dict.fromkeys(chain.from_iterable(rows)))  # every key, first seen first
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE" if ignore else "INSERT"
        names = ", ".join(_quoted(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        self.db.conn.executemany(
            f"{verb} INTO {_quoted(self.name)} ({names}) VALUES ({marks})",
            ([row.get(c) for c in columns] for row in rows))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def epoch(ts: datetime) -> float:
    return ts.timestamp()


def from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class Store:
    def __init__(self, path: str | Path, timezone: str = "UTC"):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self.db = Database(conn)
        self.tz = ZoneInfo(timezone)
        self._lock = threading.RLock()
        if self.path != ":memory:":
            self.db.enable_wal()
        # WAL with synchronous=NORMAL: a power cut may lose the last commits, never consistency
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        migrations.apply(self.db)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """All writes inside commit together or not at all."""
        with self._lock, self.db.atomic():
            yield self.db

    def query(self, sql: str, params: Iterable[Any] | dict = ()) -> list[dict]:
        with self._lock:
            return list(self.db.query(sql, params))

    def close(self) -> None:
        with self._lock:
            if self.path != ":memory:":
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.close()

    def local_day(self, ts: datetime | float) -> str:
        if not isinstance(ts, datetime):
            ts = from_epoch(ts)
        return ts.astimezone(self.tz).date().isoformat()

    # meta: small named values such as watermarks
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", [key])
        return rows[0]["value"] if rows else default

    def set_meta(self, db: Database, key: str, value: str) -> None:
        """Set inside the caller's transaction, so a watermark moves with the rows it guards."""
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value", [key, value])

    def battery_account(self) -> tuple[float, float]:
        """The energy the books see stored in the battery (Wh) and what it cost."""
        rows = self.query("SELECT stored_wh, cost FROM battery_account WHERE id = 1")
        return (rows[0]["stored_wh"], rows[0]["cost"]) if rows else (0.0, 0.0)

    def set_battery_account(self, db: Database, stored_wh: float, cost: float) -> None:
        """Set inside the booking's transaction, with the watermark it moves with."""
        db.execute("INSERT INTO battery_account VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                   "stored_wh = excluded.stored_wh, cost = excluded.cost", [stored_wh, cost])

    # samples
    def add_site_sample(self, sample: Any) -> None:
        row = {"ts": epoch(sample.ts), "pv_w": sample.pv_w, "load_w": sample.load_w,
               "grid_w": sample.grid_w, "battery_w": sample.battery_w,
               "soc_pct": sample.soc_pct, "stale": int(sample.stale)}
        with self.transaction() as db:
            db["site_samples"].insert(row, replace=True)

    def add_gpu_samples(self, rows: list[dict]) -> None:
        with self.transaction() as db:
            db["gpu_samples"].insert_all(rows, replace=True)

    def latest_site_sample(self) -> dict | None:
        rows = self.query("SELECT * FROM site_samples ORDER BY ts DESC LIMIT 1")
        return rows[0] if rows else None

    def latest_ts(self) -> datetime | None:
        """The newest time anything was sampled: where a restarted simulation resumes."""
        rows = self.query("SELECT max(ts) AS ts FROM (SELECT max(ts) AS ts FROM site_samples "
                          "UNION ALL SELECT max(ts) FROM gpu_samples)")
        value = rows[0]["ts"] if rows else None
        return None if value is None else from_epoch(value)

    # prices and plans
    def put_price_slots(self, slots: Iterable[Any]) -> int:
        rows = [{"start": epoch(s.start), "end": epoch(s.end), "import_per_kwh": s.import_per_kwh,
                 "export_per_kwh": s.export_per_kwh} for s in slots]
        with self.transaction() as db:
            db["price_slots"].insert_all(rows, pk="start", replace=True)
        return len(rows)

    def price_slots(self, start: datetime, end: datetime) -> list[dict]:
        return self.query('SELECT * FROM price_slots WHERE "end" > ? AND start < ? ORDER BY start',
                          [epoch(start), epoch(end)])

    def price_at(self, ts: datetime) -> dict | None:
        rows = self.query('SELECT * FROM price_slots WHERE start <= ? AND "end" > ? '
                          "ORDER BY start DESC LIMIT 1", [epoch(ts), epoch(ts)])
        return rows[0] if rows else None

    def put_plan(self, ts: datetime, planner: str, slot_rows: list[dict]) -> None:
        with self.transaction() as db:
            db["plans"].insert({"ts": epoch(ts), "planner": planner}, replace=True)
            db["plan_slots"].insert_all([{**r, "plan_ts": epoch(ts)} for r in slot_rows],
                                        replace=True)

    # leases and payouts
    def upsert_leases(self, rows: list[dict]) -> None:
        """Insert or update leases by (market, lease_id); the GPUs assigned to them are kept."""
        with self.transaction() as db:
            for r in rows:
                db.execute(
                    "INSERT INTO leases (market, lease_id, gpus, price_per_gpu_hour, state, "
                    "started, ended) VALUES (:market, :lease_id, :gpus, :price_per_gpu_hour, "
                    ":state, :started, :ended) ON CONFLICT(market, lease_id) DO UPDATE SET "
                    "gpus = excluded.gpus, price_per_gpu_hour = excluded.price_per_gpu_hour, "
                    "state = excluded.state, started = excluded.started, ended = excluded.ended",
                    r)

    def assign_lease_gpus(self, market: str, lease_id: str, gpu_indexes: list[int]) -> None:
        with self.transaction() as db:
            db.execute("UPDATE leases SET gpu_indexes = ? WHERE market = ? AND lease_id = ?",
                       [json.dumps(sorted(gpu_indexes)), market, lease_id])

    def leases(self, state: str | None = None) -> list[dict]:
        sql = "SELECT * FROM leases" + (" WHERE state = ?" if state else "") + " ORDER BY started"
        rows = self.query(sql, [state] if state else [])
        for r in rows:
            r["gpu_indexes"] = json.loads(r["gpu_indexes"]) if r["gpu_indexes"] else []
        return rows

    def add_payouts(self, rows: list[dict]) -> int:
        """Store payouts not seen before; returns how many were new."""
        with self.transaction() as db:
            before = db.execute("SELECT count(*) FROM payouts").fetchone()[0]
            db["payouts"].insert_all(rows, ignore=True)
            after = db.execute("SELECT count(*) FROM payouts").fetchone()[0]
        return after - before

    def last_payout_ts(self, market: str) -> datetime | None:
        rows = self.query("SELECT max(ts) AS ts FROM payouts WHERE market = ?", [market])
        return None if rows[0]["ts"] is None else from_epoch(rows[0]["ts"])

    # ledger
    def daily(self, day: str) -> list[dict]:
        return self.query("SELECT * FROM ledger_daily WHERE day = ?", [day])

    def daily_range(self, first: date, last: date) -> list[dict]:
        return self.query("SELECT * FROM ledger_daily WHERE day BETWEEN ? AND ? ORDER BY day",
                          [first.isoformat(), last.isoformat()])

    def sync_cost_items(self, rows: list[dict]) -> None:
        """Make the stored CapEx/OpEx items exactly the configured ones."""
        with self.transaction() as db:
            db.execute("DELETE FROM cost_items")
            if rows:
                db["cost_items"].insert_all(rows, pk="name")

    def cost_items(self) -> list[dict]:
        return self.query("SELECT * FROM cost_items ORDER BY date, name")

    # events
    def add_event(self, ts: datetime, kind: str, message: str, data: dict | None = None) -> None:
        """Record an event; its text is scrubbed of secrets, since it often carries an error
        from outside and events are kept and shown."""
        with self.transaction() as db:
            db["events"].insert({"ts": epoch(ts), "kind": kind, "message": redact(message),
                                 "data": redact(json.dumps(data)) if data else None})

    def events(self, limit: int = 50) -> list[dict]:
        return self.query("SELECT * FROM events ORDER BY id DESC LIMIT ?", [limit])

    # local inference: users (keys as SHA-256 only) and usage (never any text)
    USERS_VERSION = "inference_users_version"

    def add_inference_user(self, name: str, key_sha256: str, ts: datetime) -> bool:
        """Add a user, or give a revoked one a new key; False if the name is taken."""
        with self.transaction() as db:
            row = db.execute("SELECT revoked FROM inference_users WHERE name = ?",
                             [name]).fetchone()
            if row is not None and row[0] is None:
                return False
            db.execute("INSERT INTO inference_users VALUES (?, ?, ?, NULL) ON CONFLICT(name) "
                       "DO UPDATE SET key_sha256 = excluded.key_sha256, "
                       "created = excluded.created, revoked = NULL",
                       [name, key_sha256, epoch(ts)])
            self._bump_users_version(db)
        return True

    def revoke_inference_user(self, name: str, ts: datetime) -> bool:
        """Revoke a user's key; their usage stays in the books. False if no such active user."""
        with self.transaction() as db:
            cur = db.execute("UPDATE inference_users SET revoked = ? "
                             "WHERE name = ? AND revoked IS NULL", [epoch(ts), name])
            if cur.rowcount:
                self._bump_users_version(db)
        return bool(cur.rowcount)

    def _bump_users_version(self, db: Database) -> None:
        """Moves with every change of users, so a gateway's cached keys (in this process or
        another) are read again at once."""
        db.execute("INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT(key) DO UPDATE "
                   "SET value = CAST(value AS INTEGER) + 1", [self.USERS_VERSION])

    def inference_users(self) -> list[dict]:
        """Every user with their tokens in all, never their key's hash."""
        return self.query(
            "SELECT u.name, u.created, u.revoked, count(g.id) AS requests, "
            "coalesce(sum(g.prompt_tokens), 0) AS prompt_tokens, "
            "coalesce(sum(g.completion_tokens), 0) AS completion_tokens "
            "FROM inference_users u LEFT JOIN inference_usage g ON g.user = u.name "
            "GROUP BY u.name ORDER BY u.name")

    def add_inference_usage(self, rows: list[dict]) -> None:
        with self.transaction() as db:
            db["inference_usage"].insert_all(rows)

    def inference_usage_by_day(self, first: str, last: str) -> list[dict]:
        """Tokens, requests and latency per day, user and model between two local days."""
        return self.query(
            "SELECT day, user, model, count(*) AS requests, sum(status >= 400) AS errors, "
            "sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens "
            "FROM inference_usage WHERE day BETWEEN ? AND ? GROUP BY day, user, model "
            "ORDER BY day, user, model", [first, last])
