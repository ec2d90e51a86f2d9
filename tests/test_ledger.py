from datetime import UTC, date, datetime, timedelta

import pytest

from energy.types import PriceSlot, SiteSample
from market_adapter.base import Payout
from node.books.ledger import RigEnergy, book_energy, book_payouts, day_summary, payback
from node.storage.store import epoch

T0 = datetime(2024, 6, 12, 10, 0, tzinfo=UTC)
RIG = RigEnergy(host_overhead_w=200.0, cooling_factor=1.5)


def seed(store, grid_w: float, minutes: int = 30, start=T0, pv_w: float = 5000.0,
         battery_w: float | None = None):
    store.put_price_slots([PriceSlot(start - timedelta(hours=1), start + timedelta(hours=2),
                                     import_per_kwh=0.30, export_per_kwh=0.05)])
    for k in range(minutes + 1):
        ts = start + timedelta(minutes=k)
        store.add_site_sample(SiteSample(ts, pv_w, 500.0, grid_w, battery_w, None))
        store.add_gpu_samples([
            {"ts": epoch(ts), "gpu_index": 0, "role": "market", "power_w": 600.0,
             "interval_s": 60.0 if k else None, "interval_energy_wh": 10.0 if k else None},
            {"ts": epoch(ts), "gpu_index": 1, "role": "local", "power_w": 300.0,
             "interval_s": 60.0 if k else None, "interval_energy_wh": 5.0 if k else None}])


def test_energy_is_booked_per_role_at_the_import_price_while_importing(store):
    seed(store, grid_w=2000.0, pv_w=0.0)
    assert book_energy(store, T0 + timedelta(minutes=30), RIG) == 60
    s = day_summary(store, "2024-06-12")
    # per minute: market 10 Wh + 100 W host share for 1 min (1.667 Wh), times 1.5 cooling
    market_wh = 30 * (10.0 + 200.0 / 60 / 2) * 1.5
    local_wh = 30 * (5.0 + 200.0 / 60 / 2) * 1.5
    assert s.energy_wh == pytest.approx(market_wh + local_wh)
    assert s.cost_by_role["market"] == pytest.approx(market_wh / 1000 * 0.30)
    assert s.cost_by_role["local"] == pytest.approx(local_wh / 1000 * 0.30)
    rows = store.query("SELECT DISTINCT source FROM energy_bookings")
    assert rows == [{"source": "grid"}]


def test_energy_used_while_exporting_costs_the_feed_in_price(store):
    seed(store, grid_w=-3000.0)
    book_energy(store, T0 + timedelta(minutes=30), RIG)
    s = day_summary(store, "2024-06-12")
    assert s.energy_cost == pytest.approx(s.energy_wh / 1000 * 0.05, abs=1e-4)  # rounded
    assert store.query("SELECT DISTINCT source FROM energy_bookings") == [{"source": "pv"}]


def test_booking_again_books_nothing_twice(store):
    seed(store, grid_w=2000.0, pv_w=0.0)
    book_energy(store, T0 + timedelta(minutes=10), RIG)
    book_energy(store, T0 + timedelta(minutes=30), RIG)
    split = day_summary(store, "2024-06-12")
    assert book_energy(store, T0 + timedelta(minutes=30), RIG) == 0
    assert day_summary(store, "2024-06-12") == split
    once = store.query("SELECT sum(energy_wh) AS wh FROM energy_bookings")[0]["wh"]
    assert once == pytest.approx(split.energy_wh)


def test_energy_without_a_known_price_is_booked_as_unpriced(store):
    store.add_gpu_samples([{"ts": epoch(T0), "gpu_index": 0, "role": "market",
                            "interval_s": 60.0, "interval_energy_wh": 10.0}])
    book_energy(store, T0, RIG)
    (row,) = store.query("SELECT source, cost FROM energy_bookings")
    assert row == {"source": "unpriced", "cost": 0.0}


def test_payouts_are_booked_once_in_site_currency(store):
    payouts = [Payout("sim", f"L1/{k}", "L1", T0 + timedelta(hours=k), 4.0) for k in range(3)]
    assert book_payouts(store, payouts, currency_rate=0.9) == 3
    assert book_payouts(store, payouts, currency_rate=0.9) == 0
    s = day_summary(store, "2024-06-12")
    assert s.revenue == pytest.approx(3 * 4.0 * 0.9)
    assert s.revenue_by_market == {"sim": pytest.approx(10.8)}


def test_payback_projects_from_the_trailing_30_days(store):
    store.sync_cost_items([
        {"name": "HGX", "kind": "capex", "amount": 10000.0, "amount_per_month": 0.0,
         "date": "2024-06-01"},
        {"name": "Internet", "kind": "opex", "amount": 0.0, "amount_per_month": 30.4166667,
         "date": "2024-06-01"}])
    for d in range(10):  # 101 per day of revenue, from 2024-06-01 to 2024-06-10
        ts = datetime(2024, 6, 1, 12, tzinfo=UTC) + timedelta(days=d)
        book_payouts(store, [Payout("sim", f"p{d}", "L", ts, 101.0)], 1.0)
    pb = payback(store, date(2024, 6, 10))
    assert pb.capex == 10000.0
    assert pb.net_to_date == pytest.approx(10 * 101 - 10 * 1.0, abs=0.01)  # opex 1 per day
    assert pb.net_per_day_30d == pytest.approx(100.0, abs=0.01)
    assert pb.paid_back_pct == pytest.approx(10.0, abs=0.01)
    assert pb.projected_date == date(2024, 6, 10) + timedelta(days=91)


def test_payback_without_capex_or_income(store):
    pb = payback(store, date(2024, 6, 10))
    assert pb.capex == 0 and pb.projected_date == date(2024, 6, 10)
    store.sync_cost_items([{"name": "HGX", "kind": "capex", "amount": 1.0,
                            "amount_per_month": 0.0, "date": "2024-06-01"}])
    assert payback(store, date(2024, 6, 10)).projected_date is None
