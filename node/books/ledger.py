"""The books: revenue per lease, energy cost per role and source, and the CapEx payback.

Each GPU sample carries the energy its GPU used since the previous sample; host overhead is
shared across the GPUs sampled together, and the whole is multiplied by the cooling factor.

Energy is booked by where it really came from at that moment: the site's reading then is split
over house, rig, battery and grid by `energy.flows` (the same fill the dashboard's flow diagram
draws), and the rig's energy goes to pv, battery and grid in the shares that fill gives the rig
(without a site reading, all to the grid).
Each source is priced at what it costs the owner:
- solar at the feed-in price the owner could have earned for it instead;
- grid at the import price;
- battery at the average cost of the energy stored in it: every kWh metered into the battery is
  valued at the price of what charged it (solar at feed-in, grid at import), and energy taken
  out leaves at the average. Conversion losses are not priced. Energy that left the battery
  before the books saw it charged is priced at the feed-in price of the moment, as solar, since
  a self-consuming battery is charged from surplus PV.
Energy with no known price is booked as "unpriced" at no cost.

Every booking moves a watermark in the same transaction as the rows it books, so booking again,
or after a crash, never counts anything twice; the battery's account moves in that transaction
too.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import groupby

from energy.flows import shares_of, supply_of
from market_adapter.base import Payout
from node.storage.store import Store, epoch

log = logging.getLogger("sunrig.ledger")

ENERGY_WATERMARK = "energy_booked_until"
LOCAL_VALUE_WATERMARK = "local_value_booked_until"  # the last usage row booked
LOCAL_VALUE = "local_value"  # the ledger category of local inference, by model
INCOME_CATEGORIES = ("revenue", LOCAL_VALUE)
BUCKET_S = 900
SITE_READING_MAX_AGE_S = 3600.0  # an older site reading says nothing about the rig's supply
BATTERY_STEP_MAX_S = 900.0  # a gap in sampling does not stretch one battery reading over hours


@dataclass(frozen=True)
class RigEnergy:
    host_overhead_w: float
    cooling_factor: float


@dataclass
class BatteryAccount:
    """What the energy now in the battery cost the owner, in the site currency."""

    stored_wh: float = 0.0
    cost: float = 0.0

    def price_per_kwh(self, unknown_per_kwh: float) -> float:
        """The average cost of a stored kWh; `unknown_per_kwh` while nothing was seen charged."""
        return self.cost / self.stored_wh * 1000.0 if self.stored_wh >= 1.0 else unknown_per_kwh

    def charge(self, energy_wh: float, price_per_kwh: float) -> None:
        self.stored_wh += energy_wh
        self.cost += energy_wh / 1000.0 * price_per_kwh

    def discharge(self, energy_wh: float) -> None:
        if self.stored_wh <= 0:
            return
        left = max(0.0, self.stored_wh - energy_wh)
        self.cost *= left / self.stored_wh
        self.stored_wh = left


def book_energy(store: Store, until: datetime, rig: RigEnergy) -> int:
    """Book GPU energy sampled up to `until`; returns how many samples were booked."""
    since = float(store.get_meta(ENERGY_WATERMARK, "-1"))
    until_s = epoch(until)
    samples = store.query(
        "SELECT ts, role, interval_s, interval_energy_wh FROM gpu_samples "
        "WHERE ts > ? AND ts <= ? AND interval_s IS NOT NULL ORDER BY ts", [since, until_s])
    if not samples:
        return 0
    site = store.query("SELECT ts, pv_w, load_w, grid_w, battery_w FROM site_samples "
                       "WHERE ts > ? AND ts <= ? AND grid_w IS NOT NULL ORDER BY ts",
                       [since - SITE_READING_MAX_AGE_S, until_s])
    prices = store.query('SELECT * FROM price_slots WHERE "end" > ? AND start <= ? ORDER BY start',
                         [since - 86400, until_s])
    books = _EnergyBooks(store, site, prices, store.battery_account())
    for ts, group in groupby(samples, key=lambda r: r["ts"]):
        books.book_at(ts, list(group), rig)
    with store.transaction() as db:
        for (bucket, day, role, source), (wh, cost) in books.totals.items():
            db.execute(
                "INSERT INTO energy_bookings VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(bucket, role, source) DO UPDATE SET "
                "energy_wh = energy_wh + excluded.energy_wh, cost = cost + excluded.cost",
                [bucket, day, role, source, wh, cost])
        _recompute_days(db, {k[1] for k in books.totals})
        store.set_battery_account(db, books.battery.stored_wh, books.battery.cost)
        store.set_meta(db, ENERGY_WATERMARK, repr(samples[-1]["ts"]))
    return len(samples)


class _EnergyBooks:
    """One booking pass: the rig's energy by role and source, and the battery's account."""

    def __init__(self, store: Store, site: list[dict], prices: list[dict],
                 battery: tuple[float, float]):
        self.store, self.site, self.prices = store, site, prices
        self.site_ts = [r["ts"] for r in site]
        self.price_starts = [r["start"] for r in prices]
        self.battery = BatteryAccount(*battery)
        self.totals: dict[tuple[float, str, str, str], list[float]] = defaultdict(
            lambda: [0.0, 0.0])

    def book_at(self, ts: float, group: list[dict], rig: RigEnergy) -> None:
        """The GPUs sampled together at `ts`, each over its own interval before it."""
        energy_wh = [((s["interval_energy_wh"] or 0.0)
                      + rig.host_overhead_w * s["interval_s"] / 3600.0 / len(group))
                     * rig.cooling_factor for s in group]
        interval_h = max(s["interval_s"] for s in group) / 3600.0
        reading = self._reading_at(ts)
        rig_w = sum(energy_wh) / interval_h if interval_h > 0 else 0.0
        shares = shares_of("rig", *_flows_args(reading, rig_w))
        slot = self._slot_at(ts)
        price = None if slot is None else {
            "pv": slot["export_per_kwh"], "grid": slot["import_per_kwh"],
            "battery": self.battery.price_per_kwh(slot["export_per_kwh"])}
        bucket = ts // BUCKET_S * BUCKET_S
        day = self.store.local_day(bucket)
        for s, wh in zip(group, energy_wh, strict=True):
            for source, share in shares.items():
                key = (bucket, day, s["role"] or "unknown", "unpriced" if price is None else source)
                self.totals[key][0] += wh * share
                self.totals[key][1] += wh * share / 1000.0 * (price[source] if price else 0.0)
        if reading is not None and slot is not None:
            self._account_battery(reading, rig_w, min(interval_h, BATTERY_STEP_MAX_S / 3600.0),
                                  slot)

    def _account_battery(self, reading: dict, rig_w: float, hours: float, slot: dict) -> None:
        """The battery's metered charge at the price of what charged it; its discharge out."""
        into = supply_of("battery", *_flows_args(reading, rig_w))
        self.battery.discharge(max(0.0, -(reading["battery_w"] or 0.0)) * hours)
        self.battery.charge(into["pv"] * hours, slot["export_per_kwh"])
        self.battery.charge(into["grid"] * hours, slot["import_per_kwh"])

    def _reading_at(self, ts: float) -> dict | None:
        i = bisect_right(self.site_ts, ts) - 1
        if i < 0 or ts - self.site_ts[i] > SITE_READING_MAX_AGE_S:
            return None
        return self.site[i]

    def _slot_at(self, ts: float) -> dict | None:
        i = bisect_right(self.price_starts, ts) - 1
        if i < 0 or ts >= self.prices[i]["end"]:
            return None
        return self.prices[i]


def _flows_args(reading: dict | None, rig_w: float) -> tuple:
    if reading is None:  # no site reading: nothing is placed, the rig is settled at the grid
        return None, None, rig_w, None, None
    return (reading["pv_w"], reading["load_w"], rig_w, reading["battery_w"], reading["grid_w"])


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
        db.execute("INSERT INTO ledger_daily SELECT day, ?, model, '', 0, amount "
                   "FROM local_value_bookings WHERE day = ?", [LOCAL_VALUE, day])


@dataclass(frozen=True)
class DaySummary:
    revenue: float
    energy_cost: float
    energy_wh: float
    revenue_by_market: dict[str, float]
    cost_by_role: dict[str, float]
    kwh_by_source: dict[str, float]  # the rig's energy: pv, battery, grid (unpriced if any)
    cost_by_source: dict[str, float]


def day_summary(store: Store, day: str) -> DaySummary:
    rows = store.daily(day)
    revenue = {r["name"]: r["amount"] for r in rows if r["category"] == "revenue"}
    cost: dict[str, float] = defaultdict(float)
    kwh: dict[str, float] = defaultdict(float)
    cost_source: dict[str, float] = defaultdict(float)
    for r in rows:
        if r["category"] == "energy":
            cost[r["name"]] += r["amount"]
            kwh[r["source"]] += r["energy_wh"] / 1000.0
            cost_source[r["source"]] += r["amount"]
    return DaySummary(round(sum(revenue.values()), 4), round(sum(cost.values()), 4),
                      round(sum(kwh.values()) * 1000.0, 1), revenue, dict(cost),
                      {k: round(v, 3) for k, v in kwh.items()},
                      {k: round(v, 4) for k, v in cost_source.items()})


@dataclass(frozen=True)
class Payback:
    capex: float
    net_to_date: float
    net_per_day_30d: float
    paid_back_pct: float
    projected_date: date | None
    # of net_to_date: what came in as money (market revenue less energy and OpEx), and the
    # worth of the owner's local inference at the reference prices
    cash_to_date: float = 0.0
    local_value_to_date: float = 0.0


def signed_amount(row: dict) -> float:
    """A ledger row's part in the net: revenue and local value add, energy costs."""
    return row["amount"] if row["category"] in INCOME_CATEGORIES else -row["amount"]


def payback(store: Store, today: date) -> Payback:
    """Cumulative net against CapEx, projected from the trailing 30 days; local inference
    counts at its reference value beside the cash."""
    items = store.cost_items()
    capex = sum(i["amount"] for i in items if i["kind"] == "capex")

    def net_between(first: date, last: date) -> tuple[float, float]:
        rows = store.daily_range(first, last)
        value = sum(r["amount"] for r in rows if r["category"] == LOCAL_VALUE)
        gross = sum(signed_amount(r) for r in rows)
        return gross - _opex_between(items, first, last), value

    started = min((date.fromisoformat(i["date"]) for i in items), default=today)
    net, local_value = net_between(started, today)
    window_start = max(started, today - timedelta(days=29))
    days = (today - window_start).days + 1
    per_day = net_between(window_start, today)[0] / days
    projected = date_at_pace(today, capex - net, per_day)
    pct = 100.0 if capex <= 0 else max(0.0, min(100.0, 100.0 * net / capex))
    return Payback(round(capex, 2), round(net, 2), round(per_day, 2), round(pct, 2), projected,
                   round(net - local_value, 2), round(local_value, 2))


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


@dataclass(frozen=True)
class TokenPrice:
    """What a model's tokens would cost on a hosted API, per million, in the site currency."""

    input_per_million: float
    output_per_million: float

    def value(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_million
                + completion_tokens * self.output_per_million) / 1e6


def book_local_value(store: Store, prices: dict[str, TokenPrice]) -> int:
    """Book local inference used since the last booking at the owner's reference prices (of
    now: a price changed later never revalues what was booked); returns the rows booked.
    A model without a price is booked with its tokens and no value."""
    since = int(store.get_meta(LOCAL_VALUE_WATERMARK, "0"))
    rows = store.query(
        "SELECT max(id) AS last, day, model, sum(prompt_tokens) AS prompt_tokens, "
        "sum(completion_tokens) AS completion_tokens, count(*) AS n FROM inference_usage "
        "WHERE id > ? GROUP BY day, model", [since])
    if not rows:
        return 0
    with store.transaction() as db:
        for r in rows:
            price = prices.get(r["model"])
            amount = price.value(r["prompt_tokens"], r["completion_tokens"]) if price else 0.0
            db.execute(
                "INSERT INTO local_value_bookings VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(day, model) DO UPDATE SET "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "amount = amount + excluded.amount",
                [r["day"], r["model"], r["prompt_tokens"], r["completion_tokens"],
                 round(amount, 9)])
        _recompute_days(db, {r["day"] for r in rows})
        store.set_meta(db, LOCAL_VALUE_WATERMARK, str(max(r["last"] for r in rows)))
    return sum(r["n"] for r in rows)
