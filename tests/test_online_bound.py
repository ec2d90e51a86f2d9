import math

import numpy as np
import pytest

from node.planning.online_bound import online_bound
from node.planning.planner import MarketTerms

SIZES = ((1, 0.4), (2, 0.3), (4, 0.2), (8, 0.1))


def terms(**kw) -> MarketTerms:
    base = dict(expected_price_per_gpu_hour=2.116, ask_price_per_gpu_hour=1.84,
                orders_per_hour=4.0, mean_gpus_per_order=2.6, price_spread=0.25,
                mean_lease_hours=8.0, order_sizes=SIZES)
    return MarketTerms(**(base | kw))


def best_fixed_floor(t: MarketTerms, capacity: int, cost: float) -> float:
    grid = np.linspace(cost, 5.0, 400)
    return max((f - cost) * t.carried_gpus(f, capacity) for f in grid)


@pytest.mark.parametrize("capacity,cost", [(3, 0.0), (7, 0.0), (7, 0.4), (8, 0.15)])
def test_no_fixed_floor_beats_the_bound(capacity, cost):
    # a fixed floor is one of the policies the bound ranges over
    t = terms()
    bound = online_bound(t, capacity, cost)
    assert bound.margin_per_hour >= best_fixed_floor(t, capacity, cost) - 1e-6
    assert bound.margin_per_hour <= bound.revenue_per_hour + 1e-9
    assert 0 < bound.leased_gpus <= capacity
    assert all(f >= cost for f in bound.floor_by_state.values())


def test_with_room_for_every_order_the_bound_is_the_best_single_price():
    # one-GPU orders and more GPUs than could ever be busy: no order is lost for room, so the
    # best is the price that maximises price x share paying, for every arriving order
    t = terms(order_sizes=((1, 1.0),), mean_gpus_per_order=1.0, orders_per_hour=0.5,
              mean_lease_hours=2.0)
    bound = online_bound(t, 12, floors=801)
    grid = np.linspace(0.01, 6.0, 20000)
    best = max(f * t.share_paying(f) for f in grid) * 0.5 * 2.0
    assert bound.revenue_per_hour == pytest.approx(best, rel=2e-3)


def test_revenue_and_margin_agree_when_energy_is_free():
    bound = online_bound(terms(), 7)
    assert bound.revenue_per_hour == pytest.approx(bound.margin_per_hour, rel=1e-6)
    avg_price = bound.revenue_per_hour / bound.leased_gpus
    assert 2.0 < avg_price < 3.0 and math.isfinite(avg_price)


def test_a_scarcer_rig_asks_more():
    floors = online_bound(terms(), 7).floor_by_state
    empty, nearly_full = floors[(0, 0, 0)], floors[(6, 0, 0)]  # 1, 2 and 4-GPU leases
    assert nearly_full >= empty


def test_no_room_or_no_orders_earns_nothing():
    assert online_bound(terms(), 0).revenue_per_hour == 0.0
    assert online_bound(terms(orders_per_hour=0.0), 7).margin_per_hour == 0.0
