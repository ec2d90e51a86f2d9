from datetime import UTC, datetime, timedelta

import pytest

from market_adapter.base import ACTIVE, CLOSED, Capacity, MarketError
from market_adapter.sim import SimMarket, SimMarketSettings

T0 = datetime(2024, 6, 1, tzinfo=UTC)
H200 = Capacity(8, "h200", 141.0)


class Now:
    def __init__(self):
        self.t = T0

    def __call__(self):
        return self.t


def market(seed=42, state=None, now=None, **kw):
    return SimMarket(SimMarketSettings(seed=seed, orders_per_hour=3, **kw), now or Now(), state)


def test_the_order_stream_depends_only_on_seed_and_hour():
    a, b, c = market(1), market(1), market(2)
    hours = [T0 + timedelta(hours=h) for h in range(48)]
    assert [a.orders_in_hour(h) for h in hours] == [b.orders_in_hour(h) for h in hours]
    assert [a.orders_in_hour(h) for h in hours] != [c.orders_in_hour(h) for h in hours]
    orders = [o for h in hours for o in a.orders_in_hour(h)]
    assert 100 < len(orders) < 200  # about 3 an hour
    assert all(h <= o.arrival < h + timedelta(hours=1) for h in hours
               for o in a.orders_in_hour(h))


def test_leases_respect_floor_capacity_and_model():
    now = Now()
    m = market(now=now)
    m.offer(Capacity(3, "h200", 141.0), floor_per_gpu_hour=2.2)
    now.t = T0 + timedelta(hours=24)
    leases = m.leases()
    assert leases, "a day of orders should fill 3 GPUs at a floor below the reference"
    assert all(le.price_per_gpu_hour == 2.2 for le in leases)
    by_id = {o.order_id: o for h in range(25) for o in m.orders_in_hour(T0 + timedelta(hours=h))}
    assert all(by_id[le.lease_id].max_price_per_gpu_hour >= 2.2 for le in leases)
    assert sum(le.gpus for le in leases) <= 3  # the offer was never renewed
    other = market(now=Now())
    other.offer(Capacity(8, "a100", 80.0), 0.1)
    other._now.t = T0 + timedelta(hours=24)
    assert other.leases() == []  # nobody here asks for A100s


def test_payouts_add_up_to_price_times_hours_and_are_stable():
    now = Now()
    m = market(now=now)
    for hour in range(72):  # the agent renews its offer as leases come and go
        now.t = T0 + timedelta(hours=hour)
        m.offer(Capacity(8 - sum(le.gpus for le in m.leases() if le.state == ACTIVE), "h200",
                         141.0), 1.0)
    now.t = T0 + timedelta(days=3)
    leases = m.leases()
    payouts = m.payouts(None)
    assert len({p.payout_id for p in payouts}) == len(payouts)
    for le in [le for le in leases if le.state == CLOSED]:
        hours = (le.ended - le.started) / timedelta(hours=1)
        paid = sum(p.amount for p in payouts if p.lease_id == le.lease_id)
        assert paid == pytest.approx(le.gpus * le.price_per_gpu_hour * hours, rel=1e-4)
    assert m.payouts(None) == payouts
    later = m.payouts(T0 + timedelta(days=2))
    assert later and all(p.ts >= T0 + timedelta(days=2) for p in later)
    assert sum(le.state == CLOSED for le in leases) > 5


def test_state_survives_a_restart_and_a_broken_file_is_kept_aside(tmp_path, caplog):
    path = tmp_path / "sim.json"
    now = Now()
    m = market(state=path, now=now)
    m.offer(H200, 1.0)
    now.t = T0 + timedelta(hours=12)
    before = m.leases()
    assert before
    again = market(state=path, now=now)
    assert again.leases() == before
    path.write_text("{not json")
    fresh = market(state=path, now=now)  # a broken file never stops the agent
    assert fresh.leases() == []
    assert (tmp_path / "sim.json.corrupt").read_text() == "{not json"
    assert "sim.json is corrupt" in caplog.text and "kept as sim.json.corrupt" in caplog.text


def test_invalid_offers_are_refused():
    m = market()
    with pytest.raises(MarketError):
        m.offer(Capacity(-1, "h200", 141.0), 1.0)
    with pytest.raises(MarketError):
        m.offer(H200, float("nan"))
