"""The MILP planner: properties on any input, and the behaviour a rig owner relies on."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from energy.types import PriceSlot
from node.planning.milp import MilpPlanner
from node.planning.planner import BatteryState, FillCalibration, MarketTerms, PlanInputs

NOW = datetime(2024, 6, 12, 10, 7, tzinfo=UTC)
TERMS = MarketTerms(2.1, 1.84, orders_per_hour=4.0, mean_lease_hours=8.0)


def inputs(prices=None, hours=24, **kw) -> PlanInputs:
    first = NOW.replace(minute=0)
    if prices is None:
        prices = [PriceSlot(first + timedelta(hours=h), first + timedelta(hours=h + 1), 0.25,
                            0.05) for h in range(hours)]
    base = dict(gpu_count=8, local_gpus_at=lambda ts: 1, prices=prices,
                markets={"sim": TERMS}, gpu_busy_w=650.0, gpu_min_limit_w=200.0,
                host_overhead_w=800.0, cooling_factor=1.2, breaker_limit_w=25000.0,
                house_load_w=1000.0, exporting_now=False, wear_per_gpu_hour=0.1,
                margin_per_gpu_hour=0.1, min_floor_per_gpu_hour=0.5, expected_lease_hours=8.0)
    return PlanInputs(**{**base, **kw})


def breaker_ok(inp: PlanInputs, slot) -> bool:
    busy = slot.local_gpus + sum(slot.offered.values())  # worst case: every one busy
    house = inp.house_w_at(slot.start) if inp.house_w_at else inp.house_load_w
    return (house + (inp.host_overhead_w + busy * inp.gpu_busy_w) * inp.cooling_factor
            <= inp.breaker_limit_w + 1e-6)


def test_a_sunny_day_sells_at_a_floor_covering_energy_wear_and_margin():
    planner = MilpPlanner(24, 15)
    plan = planner.plan(NOW, inputs())
    assert planner.last.status == "optimal" and plan.planner == "milp"
    assert len(plan.slots) == 24 * 4
    first = plan.slots[0]
    assert first.offered["sim"] == 7 and first.local_gpus == 1
    energy = (650 + 100) * 1.2 / 1000 * 0.25
    assert all(s.floor_per_gpu_hour["sim"] >= energy + 0.2 for s in plan.slots)
    assert all(s.floor_per_gpu_hour["sim"] >= TERMS.ask_price_per_gpu_hour for s in plan.slots)


def test_the_floor_rises_when_the_market_is_eager_and_falls_when_it_is_not():
    eager = MilpPlanner(12, 60).plan(NOW, inputs(hours=12, markets={"sim": MarketTerms(
        2.1, 1.0, orders_per_hour=20.0)})).slots[0].floor_per_gpu_hour["sim"]
    slow = MilpPlanner(12, 60).plan(NOW, inputs(hours=12, markets={"sim": MarketTerms(
        2.1, 1.0, orders_per_hour=0.2)})).slots[0].floor_per_gpu_hour["sim"]
    assert eager > 2.1 > slow


def test_gpus_are_kept_back_before_the_owner_reserves_them():
    # the owner wants all 8 GPUs from 16:00; a lease taken at 10:00 would likely still run
    reserve = lambda ts: 8 if ts.hour >= 16 else 1  # noqa: E731
    plan = MilpPlanner(24, 60).plan(NOW, inputs(local_gpus_at=reserve))
    by_hour = {s.start.hour: s.offered["sim"] for s in plan.slots[:8]}
    assert by_hour[16] == 0 and by_hour[10] < 7


def test_a_soft_reservation_sells_into_it_when_that_pays_and_a_strict_one_never():
    # the owner takes every GPU from 16:00: a lease taken before then may still run; a soft
    # reservation prices that at renting the GPU elsewhere, a strict one keeps them all free
    reserve = lambda ts: 8 if ts.hour >= 16 else 1  # noqa: E731

    def offered_before_four(shortfall):
        plan = MilpPlanner(24, 60).plan(NOW, inputs(local_gpus_at=reserve,
                                                    shortfall_per_gpu_hour=shortfall))
        assert all(sum(s.offered.values()) + s.local_gpus <= 8 for s in plan.slots)
        return sum(s.offered["sim"] for s in plan.slots[:6])  # 10:00 to 16:00

    assert offered_before_four(None) == 0
    assert offered_before_four(2.0) == 6 * 7  # a lease earns more than the rent it may cost
    assert offered_before_four(50.0) == 0  # renting elsewhere costs more than any lease earns


def test_room_shrinking_for_the_owner_is_no_flapping_to_avoid():
    # two more GPUs for the owner from 13:00, too soon for leases to fill 5 of the 7: every
    # free GPU is offered until then, not held back to keep the offer steady
    plan = MilpPlanner(24, 60).plan(NOW, inputs(local_gpus_at=lambda ts: 3 if 13 <= ts.hour < 18
                                                else 1))
    assert [s.offered["sim"] for s in plan.slots[:5]] == [7, 7, 7, 5, 5]


def test_a_gpu_free_in_a_slot_without_new_leases_aimed_for_still_asks_the_best_floor():
    # leases run now and the owner takes every GPU from 16:00: no new lease is worth aiming for,
    # yet a GPU that the rounding leaves free must not go at the market's ask
    plan = MilpPlanner(24, 60).plan(NOW, inputs(local_gpus_at=lambda ts: 8 if ts.hour >= 16
                                                else 1, leased_gpus_at=lambda m, ts: 3.0 * (
                                                    0.88 ** ((ts - NOW).total_seconds() / 3600))))
    best = TERMS.best_floor(0.0, 7)
    before = plan.slots[:6]  # 10:00 to 16:00, where GPUs are free
    assert any(s.offered["sim"] > 3 for s in before)
    assert all(s.floor_per_gpu_hour["sim"] >= best - 0.05 for s in before)


def test_running_leases_are_never_taken_back():
    plan = MilpPlanner(24, 60).plan(NOW, inputs(
        leased_gpus_at=lambda m, ts: 5.0, markets={"sim": MarketTerms(2.1, 1.84, 0.0)},
        prices=[PriceSlot(NOW.replace(minute=0) + timedelta(hours=h),
                          NOW.replace(minute=0) + timedelta(hours=h + 1), 9.0, 0.0)
                for h in range(24)]))
    assert all(s.offered["sim"] >= 5 for s in plan.slots)


def test_no_prices_means_no_plan_and_an_unsolvable_model_gives_the_safe_plan():
    planner = MilpPlanner(24, 60)
    assert planner.plan(NOW, inputs(prices=[])).slots == ()
    planner = MilpPlanner(24, 60, time_limit_s=1e-9)
    plan = planner.plan(NOW, inputs(leased_gpus_at=lambda m, ts: 2.0))
    if planner.last.status.startswith("fallback"):
        assert plan.planner == "milp:safe"
        assert all(s.offered["sim"] == 2 for s in plan.slots)


def test_the_loss_system_fills_less_at_dearer_floors_and_never_beyond_capacity():
    carried = [TERMS.carried_gpus(p, 7) for p in (1.5, 2.0, 2.5, 3.0, 4.0)]
    assert all(a > b for a, b in zip(carried, carried[1:], strict=False))
    assert 0 < carried[0] < 7
    # one size of order and ample capacity: the offered load itself (Erlang: nothing lost)
    single = MarketTerms(2.0, 1.0, orders_per_hour=0.5, mean_lease_hours=2.0, price_spread=0.0,
                         order_sizes=((1, 1.0),))
    assert math.isclose(single.carried_gpus(1.0, 200), 1.0, rel_tol=1e-9)
    # the best floor earns at least as much as other floors
    best = TERMS.best_floor(0.3, 7)
    for p in (1.9, 2.2, 2.6, 3.0):
        assert ((best - 0.3) * TERMS.carried_gpus(best, 7)
                >= (p - 0.3) * TERMS.carried_gpus(p, 7) - 1e-6)


def test_expected_starts_count_only_orders_that_fit_and_pay():
    sizes = MarketTerms(2.0, 1.0, orders_per_hour=4.0, price_spread=0.25,
                        order_sizes=((1, 0.5), (4, 0.5)))
    half = sizes.share_paying(2.0)
    assert math.isclose(half, 0.5)
    # room for every order: one order an hour's quarter, half of them pay, 2.5 GPUs each
    assert math.isclose(sizes.expected_gpus_started(2.0, 100, 0.25), 4.0 * 0.25 * 0.5 * 2.5)
    # eight free: a third 4-GPU order in the same quarter hour finds no room
    assert 1.2 < sizes.expected_gpus_started(2.0, 8, 0.25) < 1.25
    # three free: only the 1-GPU orders fit, and seldom do four come at once
    assert 0.24 < sizes.expected_gpus_started(2.0, 3, 0.25) < 4.0 * 0.25 * 0.5 * 0.5
    assert sizes.expected_gpus_started(2.0, 0, 0.25) == 0.0


def test_fill_calibration_learns_what_the_market_keeps():
    fills = FillCalibration(prior=0.5, weight=10, half_life_hours=24)
    for _ in range(2000):  # quarter hours: three weeks, many half-lives
        fills.record(1.0, 0.3, 0.25)
    assert abs(fills.factor - 0.3) < 0.02


slot_prices = st.lists(st.tuples(st.floats(-0.5, 3.0), st.floats(-0.5, 1.0)), min_size=0,
                       max_size=30)


@settings(max_examples=80, deadline=None)
@given(prices=slot_prices, local=st.integers(0, 10), leased=st.floats(0, 8),
       breaker=st.floats(2000, 40000), house=st.floats(0, 20000),
       gap_at=st.integers(0, 30), orders=st.floats(0, 50), pv=st.floats(0, 30000),
       battery=st.booleans())
def test_any_input_gives_a_plan_that_keeps_every_promise(prices, local, leased, breaker, house,
                                                         gap_at, orders, pv, battery):
    first = NOW.replace(minute=0)
    slots = [PriceSlot(first + timedelta(hours=h), first + timedelta(hours=h + 1), imp, exp)
             for h, (imp, exp) in enumerate(prices) if h != gap_at]
    inp = inputs(prices=slots, local_gpus_at=lambda ts: local, breaker_limit_w=breaker,
                 house_w_at=lambda ts: house, pv_w_at=lambda ts: pv,
                 leased_gpus_at=lambda m, ts: min(leased, 8.0),
                 markets={"sim": MarketTerms(2.1, 1.84, orders)},
                 battery=BatteryState(20000, 5000, 2000, 8000, 8000) if battery else None)
    planner = MilpPlanner(24, 60, time_limit_s=2.0)
    plan = planner.plan(NOW, inp)
    assert planner.last.seconds < 10
    assert len(plan.slots) <= min(gap_at, len(prices))  # nothing planned past a price gap
    for slot in plan.slots:
        held = math.ceil(min(leased, 8.0) - 1e-9)
        free_for_market = max(0, 8 - min(local, 8))
        # never the owner's GPUs; leased ones always stay; nothing new beyond the breaker
        assert sum(slot.offered.values()) <= max(free_for_market, held)
        assert sum(slot.offered.values()) >= min(held, free_for_market)
        if sum(slot.offered.values()) > held:
            assert breaker_ok(inp, slot)


def test_best_floors_of_many_slots_are_each_slots_own_best_floor():
    from node.planning.planner import best_floors
    costs = [0.0, 0.31, 0.3101, 0.9, 1.7, 2.5, 4.0]
    caps = [7, 7, 7, 3, 7, 1, 0]
    floors = best_floors(TERMS, costs, caps)
    for cost, cap, floor in zip(costs, caps, floors, strict=True):
        assert floor == TERMS.best_floor(cost, cap)
        assert floor >= TERMS.ask_price_per_gpu_hour
        if cap == 0:
            continue
        # no floor on a grid ten times finer than the ladder's earns visibly more
        top = TERMS.expected_price_per_gpu_hour * math.exp(3 * TERMS.price_spread)
        grid = [TERMS.ask_price_per_gpu_hour + (top - TERMS.ask_price_per_gpu_hour) * k / 800
                for k in range(801)]
        best = max((p - cost) * TERMS.carried_gpus(p, cap) for p in grid)
        assert (floor - cost) * TERMS.carried_gpus(floor, cap) >= best - 1e-3


def test_the_revenue_segments_are_concave_and_cover_every_ladder_price():
    from node.planning.milp import LADDER_Z, _revenue_segments
    assert len(_revenue_segments(TERMS, 0.25, 1)[0]) == 0  # orders of 3 GPUs never fit on 1
    for cap in (3, 7, 40):
        widths, slopes = _revenue_segments(TERMS, 0.25, cap)
        assert len(widths) > 3 and all(w > 0 for w in widths)
        assert all(a >= b for a, b in zip(slopes, slopes[1:], strict=False))  # concave
        ends = np.cumsum(widths)
        revenue = np.cumsum(widths * slopes)
        ladder = [TERMS.expected_price_per_gpu_hour * math.exp(TERMS.price_spread * z)
                  for z in LADDER_Z]
        for p in [TERMS.ask_price_per_gpu_hour] + [p for p in ladder if p >= 1.84]:
            # what a floor on the ladder earns lies under the envelope
                started = TERMS.carried_gpus(p, cap) / TERMS.mean_lease_hours * 0.25
                assert started <= ends[-1] + 1e-12
                bound = np.interp(started, np.concatenate([[0.0], ends]),
                                  np.concatenate([[0.0], revenue]))
                assert bound >= started * p * TERMS.mean_lease_hours - 1e-9


def test_a_leases_energy_cost_weighs_each_later_slot_by_its_survival():
    from node.planning.milp import _lease_energy_cost
    rng = np.random.default_rng(3)
    for n, hours, mean_h in ((1, 0.25, 8.0), (96, 0.25, 8.0), (192, 0.25, 2.0), (24, 1.0, 30.0)):
        cost = rng.uniform(-0.1, 0.5, n).tolist()
        got = _lease_energy_cost(cost, hours, mean_h)
        decay = math.exp(-hours / mean_h)
        for t in range(n):  # the survival-weighted mean, slot by slot
            w = [decay ** (k - t) for k in range(t, n)]
            total, weight = sum(wi * c for wi, c in zip(w, cost[t:], strict=True)), sum(w)
            left = decay ** (n - t)
            if left > 1e-3:  # beyond the horizon: the horizon's mean
                tail = left / (1 - decay)
                total, weight = total + tail * sum(cost) / n, weight + tail
            assert got[t] == pytest.approx(total / weight, rel=1e-9, abs=1e-12)


def test_the_model_has_no_row_per_envelope_piece_and_solves_as_the_relaxation():
    from node.planning.milp import _Model
    model = _Model.build(NOW, inputs(hours=48), 48, 15)
    x, status = model.solve(5.0)
    assert status == "optimal"
    assert model.rows.n < 8 * model.T  # a handful of rows per slot, bounds for the envelope
    roles = x[model.cols["role"]]
    assert np.allclose(roles, np.round(roles))  # whole GPUs in the market role


def arbitrage_day(hours: int = 24, step_minutes: int = 15) -> PlanInputs:
    """Cheap nights, a dear evening that even pays well for export, PV at midday: a battery the
    plan could steer would charge from the grid at night and sell at the evening peak."""
    first = NOW.replace(hour=0, minute=0)
    step = timedelta(minutes=step_minutes)
    prices = []
    for k in range(hours * 60 // step_minutes):
        hour = (first + k * step).hour
        imp, exp = (0.05, 0.01) if hour < 6 else (0.60, 0.55) if 17 <= hour < 21 else (0.30, 0.08)
        prices.append(PriceSlot(first + k * step, first + (k + 1) * step, imp, exp))

    def pv(ts: datetime) -> float:
        return max(0.0, 9000.0 * math.sin(math.pi * (ts.hour + ts.minute / 60 - 7) / 12))
    return inputs(prices=prices, pv_w_at=pv, house_w_at=lambda ts: 600.0,
                  battery=BatteryState(20000, 10000, 2000, 8000, 8000))


def test_the_plan_runs_the_battery_as_the_site_does_never_from_or_into_the_grid():
    inp = arbitrage_day()
    planner = MilpPlanner(24, 15)
    plan = planner.plan(NOW.replace(hour=0, minute=0), inp)
    assert plan.slots
    model, x = planner.model, planner.x
    battery_w = np.asarray(model.base["battery_w"])
    imp, exp = x[model.cols["imp"]], x[model.cols["exp"]]
    pv = np.asarray(model.base["pv_w"])
    assert (battery_w > 1.0).any() and (battery_w < -1.0).any()  # it does run
    for t in range(model.T):
        if battery_w[t] > 1e-6:  # charging: from PV only, nothing bought meanwhile
            assert imp[t] < 1e-6 and pv[t] > 0
        if battery_w[t] < -1e-6:  # discharging: into the house and rig only, nothing sold
            assert exp[t] < 1e-6
        assert exp[t] <= pv[t] + 1e-6  # only PV is ever exported


def test_the_plans_energy_cost_is_what_the_site_then_books():
    from node.planning.economics import _battery_step
    inp = arbitrage_day()
    planner = MilpPlanner(24, 15)
    planner.plan(NOW.replace(hour=0, minute=0), inp)
    model, x = planner.model, planner.x
    pv = np.asarray(model.base["pv_w"])
    demand = np.asarray(model.base["fixed_w"]) + pv + model.lease_draw_w(x)
    soc, booked = inp.battery.soc_wh, 0.0
    for t in range(model.T):  # the simulated site, step by step, under the draw planned
        imp_w, exp_w, _, soc = _battery_step(pv[t], demand[t], soc, inp.battery)
        booked += (imp_w * model.base["import"][t] - exp_w * model.base["export"][t]) * 0.25 / 1e3
    assert model.energy_cost(x) == pytest.approx(booked, rel=0.02, abs=0.05)


def test_an_honest_markets_lumpy_orders_barely_move_the_fill_factor():
    """Orders as the model says, of 1 to 8 GPUs: a day's luck must not move the floor."""
    rng = np.random.default_rng(11)
    sizes = ((1, 0.4), (2, 0.3), (4, 0.2), (8, 0.1))
    terms = MarketTerms(2.1, 1.84, orders_per_hour=4.0, order_sizes=sizes)
    fills = FillCalibration.for_terms(terms)
    share = terms.share_paying(2.4)
    worst = 0.0
    for _ in range(4 * 24 * 28):  # four weeks of quarter hours, 8 GPUs free at a floor of 2.4
        expected = terms.expected_gpus_started(2.4, 8, 0.25)
        started, free = 0, 8
        for _ in range(rng.poisson(1.0)):
            n = rng.choice([s for s, _ in sizes], p=[w for _, w in sizes])
            if n <= free and rng.random() < share:
                started, free = started + n, free - n
        fills.record(expected, started, 0.25)
        worst = max(worst, abs(fills.factor - 1.0))
    assert worst < 0.15
    # and a market that keeps only half of what the model promised is still learned
    for _ in range(4 * 24 * 56):
        fills.record(1.0, 0.5, 0.25)
    assert fills.factor < 0.7


def test_a_program_solved_again_with_moved_bounds_starts_from_its_basis_and_is_exact():
    from node.planning.highs import Program, sparse_rows

    # max x + 2y  s.t.  x + y <= 1.5 (entered as two halves: duplicates add up), 0 <= x, y <= 1
    rows = sparse_rows(np.array([0, 0, 0]), np.array([0, 1, 1]), np.array([1.0, 0.5, 0.5]), 1,
                       2)
    assert rows.value.tolist() == [1.0, 1.0]
    program = Program(np.array([-1.0, -2.0]), np.zeros(2), np.ones(2), rows,
                      np.array([-np.inf]), np.array([1.5]))
    x, status = program.solve(5.0)
    assert status == "optimal" and x.tolist() == pytest.approx([0.5, 1.0])
    x, status = program.solve(5.0, integer=np.array([0]))
    assert status == "optimal" and x.tolist() == pytest.approx([0.0, 1.0])
    program.resolve(np.array([-1.0, -2.0]), np.zeros(2), np.ones(2), np.array([-np.inf]),
                    np.array([1.2]))
    x, status = program.solve(5.0)  # continuous again, the row's bound moved
    assert status == "optimal" and x.tolist() == pytest.approx([0.2, 1.0])
    assert program._highs.getInfo().simplex_iteration_count <= 1


def test_the_second_pass_solves_on_the_first_pass_program(monkeypatch):
    """Where the battery's answer to the first pass's leases moves only bounds, the second
    pass changes them on the first pass's HiGHS instance rather than building another."""
    from node.planning import milp

    solves = []
    solve = milp._Model.solve

    def spy(model, time_limit_s, warm=None):
        x, status = solve(model, time_limit_s, warm)
        solves.append((model.program, warm))
        return x, status
    monkeypatch.setattr(milp._Model, "solve", spy)
    MilpPlanner(24, 15).plan(NOW.replace(hour=0, minute=0), arbitrage_day())
    assert len(solves) == 2  # the battery moved: a second pass was solved
    (first, none), (second, warm) = solves
    assert none is None and warm is first and second is first
