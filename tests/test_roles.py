from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from node.config import LocalConfig, ReservationWindow
from node.roles import (
    LOCAL,
    MARKET,
    PARKED,
    Assignment,
    LeaseHold,
    Physical,
    assign_roles,
    power_limit_for,
    reserved_local_gpus,
)


@st.composite
def situations(draw):
    n = draw(st.integers(1, 16))
    indexes = list(range(n))
    leases, taken = [], set()
    for k in range(draw(st.integers(0, 5))):
        market = draw(st.sampled_from(["akash", "hyperbolic"]))
        size = draw(st.integers(1, 4))
        held = ()
        if draw(st.booleans()):  # an already placed lease, on GPUs nobody else holds
            free = [i for i in indexes if i not in taken]
            held = tuple(draw(st.permutations(free))[:size]) if free else ()
            taken.update(held)
            size = max(1, len(held))
        leases.append(LeaseHold(market, f"L{k}", size, held))
    previous = {i: Assignment(i, draw(st.sampled_from([LOCAL, MARKET, PARKED])),
                              draw(st.sampled_from([None, "akash"]))) for i in indexes
                if draw(st.booleans())}
    offered = {"akash": draw(st.integers(0, 16)), "hyperbolic": draw(st.integers(0, 16))}
    return indexes, draw(st.integers(0, 20)), offered, leases, previous


@settings(max_examples=300, deadline=None)
@given(situations())
def test_role_invariants_hold_for_any_situation(situation):
    indexes, reserved, offered, leases, previous = situation
    result = assign_roles(indexes, reserved, offered, leases, previous)
    by_index = {a.index: a for a in result.assignments}
    assert sorted(by_index) == indexes  # every GPU exactly one role

    for lease in leases:  # a GPU holding a lease keeps it, in its market
        for i in lease.gpu_indexes:
            assert by_index[i] == Assignment(i, MARKET, lease.market, lease.lease_id)
    for (market, lease_id), picks in result.new_lease_gpus.items():
        lease = next(le for le in leases if le.lease_id == lease_id)
        assert len(picks) == lease.gpus
        for i in picks:
            assert by_index[i] == Assignment(i, MARKET, market, lease_id)

    held = {i for le in leases for i in le.gpu_indexes}
    local = [a for a in result.assignments if a.role == LOCAL]
    assert len(local) == min(reserved, len(indexes) - len(held))
    assert all(a.market is None and a.lease_id is None for a in local)  # never offered

    for market, n in offered.items():  # no more market GPUs than offered, leases aside
        in_market = [a for a in result.assignments if a.market == market]
        free = [a for a in in_market if a.lease_id is None]
        assert len(free) == result.free_offered[market]
        assert len(free) <= max(0, n - (len(in_market) - len(free)))
    parked = [a for a in result.assignments if a.role == PARKED]
    assert all(a.market is None and a.lease_id is None for a in parked)


def test_roles_do_not_flap_between_passes():
    first = assign_roles(range(8), 2, {"akash": 4}, [], {})
    previous = {a.index: a for a in first.assignments}
    second = assign_roles(range(8), 2, {"akash": 4}, [], previous)
    assert second.assignments == first.assignments
    # the owner now wants 3: one more local GPU, taken from those not in the market
    third = assign_roles(range(8), 3, {"akash": 4}, [], previous)
    assert set(first.by_role(LOCAL)) < set(third.by_role(LOCAL))
    assert set(third.by_role(MARKET)) == set(first.by_role(MARKET))


def test_a_new_lease_gets_free_market_gpus_and_never_local_ones():
    result = assign_roles(range(4), 3, {"akash": 1}, [LeaseHold("akash", "L1", 1)], {})
    (picks,) = result.new_lease_gpus.values()
    assert picks[0] not in result.by_role(LOCAL)
    too_big = assign_roles(range(4), 3, {"akash": 1}, [LeaseHold("akash", "L2", 2)], {})
    assert too_big.unplaced_leases == ("L2",)


def test_reservation_follows_the_weekly_schedule():
    local = LocalConfig(reserved_gpus=1, schedule=(
        ReservationWindow(("mon", "tue"), "08:00", "18:00", 4),
        ReservationWindow(("tue",), "12:00", "13:00", 6)))
    assert reserved_local_gpus(local, datetime(2024, 6, 10, 9, 0)) == 4  # Monday 09:00
    assert reserved_local_gpus(local, datetime(2024, 6, 11, 12, 30)) == 6  # the largest wins
    assert reserved_local_gpus(local, datetime(2024, 6, 10, 18, 0)) == 1  # end is exclusive
    assert reserved_local_gpus(local, datetime(2024, 6, 15, 9, 0)) == 1  # Saturday


def test_parked_gpus_get_the_lowest_limit():
    assert power_limit_for(PARKED, 200.0, 700.0) == 200.0
    assert power_limit_for(MARKET, 200.0, 700.0) == 700.0
    assert power_limit_for(LOCAL, 200.0, 700.0) == 700.0


@st.composite
def with_physical(draw):
    indexes, reserved, offered, leases, previous = draw(situations())
    owner = {i: draw(st.sampled_from(["akash", "hyperbolic", "local", "hold", None]))
             for i in indexes}
    lease_ids = [le.lease_id for le in leases] + ["instance/rental-0", "ns/web"]
    tenant = {i: (m, draw(st.sampled_from(lease_ids))) for i, m in owner.items()
              if m in ("akash", "hyperbolic")}
    held = Physical(tenant, frozenset(i for i, m in owner.items() if m == "local"),
                    frozenset(i for i, m in owner.items() if m == "hold"))
    return indexes, reserved, offered, leases, previous, held


@settings(max_examples=300, deadline=None)
@given(with_physical())
def test_the_gpus_pods_really_hold_win_over_counts_and_guesses(situation):
    indexes, reserved, offered, leases, previous, held = situation
    result = assign_roles(indexes, reserved, offered, leases, previous, held)
    by_index = {a.index: a for a in result.assignments}
    assert sorted(by_index) == indexes
    for i, (market, _) in held.tenant.items():  # a tenant's GPU is its market's, with a lease
        assert by_index[i].role == MARKET and by_index[i].market == market
        assert by_index[i].lease_id
    for i in held.local:
        assert by_index[i].role == LOCAL
    for i in held.hold:  # a hold pod's GPU is never offered
        assert by_index[i].role in (LOCAL, PARKED)
    for (market, _), picks in result.new_lease_gpus.items():
        assert not set(picks) & (held.local | held.hold)
        assert all(held.tenant.get(i, (market,))[0] == market for i in picks)


def test_a_lease_runs_where_its_pod_is_not_where_it_was_guessed():
    guessed = LeaseHold("akash", "akash1owner/123/1/1", 2, (0, 1))
    held = Physical({5: ("akash", "akash1owner/123/1/1"), 6: ("akash", "akash1owner/123/1/1"),
                     7: ("hyperbolic", "instance/rental-0")}, frozenset({0}), frozenset({1}))
    hyper = LeaseHold("hyperbolic", "hb-1", 1)  # Hyperbolic names no lease per pod
    result = assign_roles(range(8), 2, {"akash": 2, "hyperbolic": 1}, [guessed, hyper], {}, held)
    by_index = {a.index: a for a in result.assignments}
    assert by_index[5] == Assignment(5, MARKET, "akash", "akash1owner/123/1/1")
    assert by_index[7] == Assignment(7, MARKET, "hyperbolic", "hb-1")
    assert result.new_lease_gpus[("akash", "akash1owner/123/1/1")] == (5, 6)
    assert result.new_lease_gpus[("hyperbolic", "hb-1")] == (7,)
    assert by_index[0].role == LOCAL and by_index[1].role == LOCAL  # owner's pod, then hold
    assert result.free_offered == {"akash": 0, "hyperbolic": 0}  # both shares are taken
