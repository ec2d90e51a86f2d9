"""The books: revenue per lease, energy cost per role, and the CapEx payback.

Energy is priced at the marginal price of the moment: the feed-in price while the site exports
(the rig then runs on solar that would otherwise be sold), the import price otherwise. Each GPU
sample carries the energy its GPU used since the previous sample; host overhead is shared across
the GPUs sampled together, and the whole is multiplied by the cooling factor.

Every booking moves a watermark in the same transaction as the rows it books, so booking again,
or after a crash, never counts anything twice.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from market_adapter.base import Payout
from node.store import Store, epoch

log = logging.getLogger("sunrig.ledger")

ENERGY_WATERMARK = "energy_booked_until"
BUCKET_S = 900


@dataclass(frozen=True)
class RigEnergy:
    host_overhead_w: float
    cooling_factor: float


def book_energy(store: Store, until: datetime, rig: RigEnergy) -> int:
    """Book GPU energy sampled up to `until`; returns how many samples were booked."""
    since = float(store.get_meta(ENERGY_WATERMARK, "-1"))
    until_s = epoch(until)
    samples = store.query(
        "SELECT ts, role, interval_s, interval_energy_wh, "
        "count(*) OVER (PARTITION BY ts) AS gpus_at_ts FROM gpu_samples "
        "WHERE ts > ? AND ts <= ? AND interval_s IS NOT NULL ORDER BY ts", [since, until_s])
    if not samples:
        return 0
    site = store.query("SELECT ts, grid_w FROM site_samples WHERE ts > ? AND ts <= ? "
                       "AND grid_w IS NOT NULL ORDER BY ts", [since - 3600, until_s])
    prices = store.query('SELECT * FROM price_slots WHERE "end" > ? AND start <= ? ORDER BY start',
                         [since - 86400, until_s])
    site_ts = [r["ts"] for r in site]
    price_starts = [r["start"] for r in prices]
    totals: dict[tuple[float, str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for s in samples:
        wh = ((s["interval_energy_wh"] or 0.0)
              + rig.host_overhead_w * s["interval_s"] / 3600.0 / s["gpus_at_ts"])
        wh *= rig.cooling_factor
        exporting = _exporting_at(site, site_ts, s["ts"])
        price = price_at(prices, price_starts, s["ts"], exporting)
        source = "unpriced" if price is None else ("pv" if exporting else "grid")
        bucket = s["ts"] // BUCKET_S * BUCKET_S
        key = (bucket, store.local_day(bucket), s["role"] or "unknown", source)
        totals[key][0] += wh
        totals[key][1] += wh / 1000.0 * (price or 0.0)
    with store.transaction() as db:
        for (bucket, day, role, source), (wh, cost) in totals.items():
            db.execute(
                "INSERT INTO energy_bookings VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(bucket, role, source) DO UPDATE SET "
                "energy_wh = energy_wh + excluded.energy_wh, cost = cost + excluded.cost",
                [bucket, day, role, source, wh, cost])
        _recompute_days(db, {k[1] for k in totals})
        store.set_meta(db, ENERGY_WATERMARK, repr(samples[-1]["ts"]))
    return len(samples)


def _exporting_at(site: list[dict], site_ts: list[float], ts: float) -> bool:
    i = bisect_right(site_ts, ts) - 1
    return i >= 0 and site[i]["grid_w"] < 0


def price_at(prices: list[dict], starts: list[float], ts: float, exporting: bool
              ) -> float | None:
    i = bisect_right(starts, ts) - 1
    if i < 0 or ts >= prices[i]["end"]:
        return None
    return prices[i]["export_per_kwh"] if exporting else prices[i]["import_per_kwh"]


def book_payouts(store: Store, payouts: Iterable[Payout], currency_rate: float) -> int:
    """Store payouts not seen before, in site currency; returns how many were new.

    A cumulative payout (what a lease has earned in all) books only its growth over what the
    lease has booked already, so reading the same books twice books nothing twice; a total
    that shrank (the market's books corrected) books nothing and is logged.
    """
    rows = []
    for p in payouts:
        amount = p.amount
        if p.cumulative:
            amount = round(p.amount - _booked_market(store, p.market, p.lease_id), 9)
            if amount < 0:
                log.warning("%s lease %s: earned total fell to %.6f; nothing booked",
                            p.market, p.lease_id, p.amount)
            if amount <= 0:
                continue
        rows.append({"market": p.market, "payout_id": p.payout_id, "lease_id": p.lease_id,
                     "ts": epoch(p.ts), "day": store.local_day(p.ts),
                     "amount": round(amount * currency_rate, 6), "amount_market": amount})
    if not rows:
        return 0
    new = store.add_payouts(rows)
    if new:
        with store.transaction() as db:
            _recompute_days(db, {r["day"] for r in rows})
    return new


def _booked_market(store: Store, market: str, lease_id: str) -> float:
    row = store.query("SELECT coalesce(sum(amount_market), 0) AS s FROM payouts WHERE market = ? "
                      "AND lease_id = ?", [market, lease_id])
    return float(row[0]["s"])


def _recompute_days(db, days: set[str]) -> None:
    """Rebuild the daily ledger of these days from bookings and payouts."""
    for day in days:
        db.execute("DELETE FROM ledger_daily WHERE day = ?", [day])
        db.execute("INSERT INTO ledger_daily SELECT day, 'energy', role, source, sum(energy_wh), "
                   "sum(cost) FROM energy_bookings WHERE day = ? GROUP BY role, source", [day])
        db.execute("INSERT INTO ledger_daily SELECT day, 'revenue', market, '', 0, sum(amount) "
                   "FROM payouts WHERE day = ? GROUP BY market", [day])


@dataclass(frozen=True)
class DaySummary:
    revenue: float
    energy_cost: float
    energy_wh: float
    revenue_by_market: dict[str, float]
    cost_by_role: dict[str, float]


def day_summary(store: Store, day: str) -> DaySummary:
    rows = store.daily(day)
    revenue = {r["name"]: r["amount"] for r in rows if r["category"] == "revenue"}
    cost: dict[str, float] = defaultdict(float)
    energy_wh = 0.0
    for r in rows:
        if r["category"] == "energy":
            cost[r["name"]] += r["amount"]
            energy_wh += r["energy_wh"]
    return DaySummary(round(sum(revenue.values()), 4), round(sum(cost.values()), 4),
                      round(energy_wh, 1), revenue, dict(cost))


@dataclass(frozen=True)
class Payback:
    capex: float
    net_to_date: float
    net_per_day_30d: float
    paid_back_pct: float
    projected_date: date | None


def payback(store: Store, today: date) -> Payback:
    """Cumulative net cash flow against CapEx, projected from the trailing 30 days."""
    items = store.cost_items()
    capex = sum(i["amount"] for i in items if i["kind"] == "capex")

    def net_between(first: date, last: date) -> float:
        rows = store.daily_range(first, last)
        gross = sum(r["amount"] if r["category"] == "revenue" else -r["amount"] for r in rows)
        return gross - _opex_between(items, first, last)

    started = min((date.fromisoformat(i["date"]) for i in items), default=today)
    net = net_between(started, today)
    window_start = max(started, today - timedelta(days=29))
    days = (today - window_start).days + 1
    per_day = net_between(window_start, today) / days
    projected = date_at_pace(today, capex - net, per_day)
    pct = 100.0 if capex <= 0 else max(0.0, min(100.0, 100.0 * net / capex))
    return Payback(round(capex, 2), round(net, 2), round(per_day, 2), round(pct, 2), projected)


def date_at_pace(today: date, remaining: float, per_day: float) -> date | None:
    """When `remaining` is paid back at `per_day`; today if it is already, None if never."""
    if remaining <= 0:
        return today
    return today + timedelta(days=int(remaining / per_day) + 1) if per_day > 0 else None


def _opex_between(items: list[dict], first: date, last: date) -> float:
    total = 0.0
    for item in items:
        if item["kind"] != "opex":
            continue
        since = max(first, date.fromisoformat(item["date"]))
        if since <= last:
            total += item["amount_per_month"] * 12 / 365 * ((last - since).days + 1)
    return total
