from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from energy.types import PriceSlot
from node.planning.planner import MarketTerms, PlanInputs, RulePlanner, energy_cost_per_gpu_hour

NOW = datetime(2024, 6, 12, 10, 7, tzinfo=UTC)


def inputs(import_price=0.25, export_price=0.05, hours=48, **kw) -> PlanInputs:
    first = NOW.replace(minute=0)
    prices = [PriceSlot(first + timedelta(hours=h), first + timedelta(hours=h + 1), import_price,
                        export_price) for h in range(hours)]
    base = dict(gpu_count=8, local_gpus_at=lambda ts: 1, prices=prices,
                markets={"sim": MarketTerms(2.1, 1.9)}, gpu_busy_w=650.0, gpu_min_limit_w=200.0,
                host_overhead_w=800.0, cooling_factor=1.2, breaker_limit_w=25000.0,
                house_load_w=1000.0, exporting_now=False, wear_per_gpu_hour=0.1,
                margin_per_gpu_hour=0.1, min_floor_per_gpu_hour=0.5, expected_lease_hours=4.0)
    return PlanInputs(**{**base, **kw})


def test_slots_cover_the_horizon_from_the_current_quarter():
    plan = RulePlanner(48, 15).plan(NOW, inputs())
    assert plan.slots[0].start == NOW.replace(minute=0) and len(plan.slots) == 192
    assert plan.slot_at(NOW) is plan.slots[0]
    assert plan.slots[0].offered == {"sim": 7} and plan.slots[0].local_gpus == 1


def test_floor_covers_energy_wear_and_margin_and_the_ask():
    inp = inputs(import_price=1.5, markets={"sim": MarketTerms(2.1, 1.0)})
    slot = RulePlanner().plan(NOW, inp).slots[0]
    cost = energy_cost_per_gpu_hour(inp, 1.5)
    assert cost == pytest.approx((650 + 100) * 1.2 / 1000 * 1.5)
    assert slot.floor_per_gpu_hour["sim"] == pytest.approx(cost + 0.2, abs=1e-4)
    assert slot.offered == {"sim": 7}  # the market's 2.10 still covers 1.55
    cheap = RulePlanner().plan(NOW, inputs(import_price=0.1)).slots[0]
    assert cheap.floor_per_gpu_hour["sim"] == 1.9  # the ask, above the energy floor


def test_nothing_is_offered_when_energy_costs_more_than_the_market_pays():
    slot = RulePlanner().plan(NOW, inputs(import_price=3.0)).slots[0]
    assert slot.offered == {"sim": 0}


def test_while_exporting_the_current_slot_is_priced_at_feed_in():
    inp = inputs(import_price=3.0, export_price=0.02, exporting_now=True)
    plan = RulePlanner().plan(NOW, inp)
    assert plan.slots[0].offered == {"sim": 7}  # solar that would sell for 0.02
    assert plan.slots[4].offered == {"sim": 0}  # later slots cannot count on the sun yet


def test_the_plan_stops_where_prices_are_unknown():
    assert len(RulePlanner(48, 15).plan(NOW, inputs(hours=6)).slots) == 6 * 4


def test_gpus_the_owner_wants_soon_are_not_offered():
    at_noon = NOW.replace(hour=12, minute=0)
    inp = inputs(local_gpus_at=lambda ts: 4 if ts >= at_noon else 1)
    plan = RulePlanner().plan(NOW, inp)
    assert plan.slot_at(NOW).offered == {"sim": 4}  # noon is within a 4-hour lease
    assert plan.slot_at(NOW).local_gpus == 1


@settings(max_examples=100, deadline=None)
@given(breaker=st.floats(2000, 30000), house=st.floats(0, 10000), local=st.integers(0, 8),
       markets=st.integers(1, 3))
def test_offers_never_exceed_the_breaker_or_the_free_gpus(breaker, house, local, markets):
    inp = inputs(breaker_limit_w=breaker, house_load_w=house, local_gpus_at=lambda ts: local,
                 markets={f"m{k}": MarketTerms(3.0, 2.0) for k in range(markets)})
    for slot in RulePlanner(6, 15).plan(NOW, inp).slots:
        sold = sum(slot.offered.values())
        assert sold <= 8 - local
        busy = (sold + local) * 650 + 800
        assert sold == 0 or house + busy * 1.2 <= breaker


def test_price_at_finds_the_covering_slot_and_nothing_in_a_gap_or_outside():
    from datetime import UTC, datetime, timedelta

    from energy.types import PriceSlot
    from node.planning.planner import price_at
    t0 = datetime(2024, 6, 10, tzinfo=UTC)
    hour = timedelta(hours=1)
    slots = [PriceSlot(t0 + k * hour, t0 + (k + 1) * hour, float(k), 0.0) for k in range(48)
             if k != 5]
    assert price_at(slots, t0).import_per_kwh == 0.0
    assert price_at(slots, t0 + 7.5 * hour).import_per_kwh == 7.0
    assert price_at(slots, t0 + 47.99 * hour).import_per_kwh == 47.0
    assert price_at(slots, t0 + 5.5 * hour) is None  # the gap
    assert price_at(slots, t0 - timedelta(seconds=1)) is None
    assert price_at(slots, t0 + 48 * hour) is None
    assert price_at([], t0) is None
