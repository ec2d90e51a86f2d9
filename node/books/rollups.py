"""Roll raw samples up into 1-minute, 15-minute and daily buckets, and expire raw samples.

Rollups are recomputed from raw samples for every bucket at or after the last complete one, so
running them twice, or after a crash, gives the same rows. Daily buckets follow the site's local
midnight.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from node.storage.store import Store, epoch, from_epoch

PERIODS_S = {"1m": 60, "15m": 900}
WATERMARK = "rollup_until"

_SITE_SQL = """
INSERT OR REPLACE INTO site_rollups
SELECT :period, CAST(ts / :size AS INTEGER) * :size AS bucket, count(*),
       avg(pv_w), avg(load_w), avg(grid_w), avg(battery_w), avg(soc_pct),
       avg(pv_w) * :hours, avg(load_w) * :hours,
       avg(max(grid_w, 0)) * :hours, avg(max(-grid_w, 0)) * :hours
FROM site_samples WHERE ts >= :since AND ts < :until AND stale = 0
GROUP BY bucket
"""

_GPU_SQL = """
INSERT OR REPLACE INTO gpu_rollups
SELECT :period, CAST(ts / :size AS INTEGER) * :size AS bucket, gpu_index, count(*),
       avg(power_w), avg(util_pct), max(temp_c), avg(power_w) * :hours
FROM gpu_samples WHERE ts >= :since AND ts < :until
GROUP BY bucket, gpu_index
"""


def roll_up(store: Store, until: datetime) -> None:
    """Bring 1m, 15m and daily rollups up to `until` (the last, partial bucket included)."""
    done = float(store.get_meta(WATERMARK, "0"))
    since = (done // PERIODS_S["15m"]) * PERIODS_S["15m"]  # redo the last open 15-min bucket
    until_s = epoch(until)
    with store.transaction() as db:
        for period, size in PERIODS_S.items():
            params = {"period": period, "size": size, "hours": size / 3600.0,
                      "since": since, "until": until_s}
            db.execute(_SITE_SQL, params)
            db.execute(_GPU_SQL, params)
        _roll_days(store, from_epoch(since) if since else None)
        store.set_meta(db, WATERMARK, repr(until_s))


def _roll_days(store: Store, since: datetime | None) -> None:
    """Daily rows from 15-minute rows, grouped by the site's local date."""
    db = store.db
    first = _local_midnight(store, store.local_day(since)) if since else 0.0
    cursor = db.execute("SELECT * FROM site_rollups WHERE period = '15m' AND bucket >= ? "
                        "ORDER BY bucket", [first])
    cols = [d[0] for d in cursor.description]
    days: dict[str, list[dict]] = {}
    for raw in cursor.fetchall():
        row = dict(zip(cols, raw, strict=True))
        days.setdefault(store.local_day(row["bucket"]), []).append(row)
    for day, rows in days.items():
        db.execute("INSERT OR REPLACE INTO site_rollups VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   ["1d", _local_midnight(store, day), *_merge(rows)])
    _roll_gpu_days(store, list(days))


def _roll_gpu_days(store: Store, days: list[str]) -> None:
    db = store.db
    for day in days:
        start = _local_midnight(store, day)
        end = _local_midnight(store, _next_day(day))
        db.execute(
            "INSERT OR REPLACE INTO gpu_rollups SELECT '1d', ?, gpu_index, sum(n), "
            "sum(power_w * n) / sum(n), sum(util_pct * n) / sum(n), max(temp_c_max), "
            "sum(energy_wh) FROM gpu_rollups WHERE period = '15m' AND bucket >= ? AND bucket < ? "
            "GROUP BY gpu_index", [start, start, end])


def _merge(rows: list[dict]) -> list:
    """Sample-weighted means of powers and SoC, sums of energies."""
    n = sum(r["n"] for r in rows)

    def mean(col: str) -> float | None:
        vals = [(r[col], r["n"]) for r in rows if r[col] is not None]
        weight = sum(w for _, w in vals)
        return sum(v * w for v, w in vals) / weight if weight else None

    def total(col: str) -> float | None:
        vals = [r[col] for r in rows if r[col] is not None]
        return sum(vals) if vals else None

    return [n, mean("pv_w"), mean("load_w"), mean("grid_w"), mean("battery_w"), mean("soc_pct"),
            total("pv_wh"), total("load_wh"), total("import_wh"), total("export_wh")]


def _local_midnight(store: Store, day: str) -> float:
    d = datetime.fromisoformat(day).replace(tzinfo=store.tz)
    return epoch(d)


def _next_day(day: str) -> str:
    return (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()


def expire_raw(store: Store, now: datetime, retention_days: float) -> int:
    """Delete raw samples older than the retention, only where rollups already cover them."""
    rolled = float(store.get_meta(WATERMARK, "0"))
    cutoff = min(epoch(now) - retention_days * 86400.0, rolled)
    with store.transaction() as db:
        n = db.execute("DELETE FROM site_samples WHERE ts < ?", [cutoff]).rowcount
        n += db.execute("DELETE FROM gpu_samples WHERE ts < ?", [cutoff]).rowcount
    return n
