from hypothesis import given
from hypothesis import strategies as st

from energy.flows import power_flows


def as_map(flows):
    return {(f.source, f.sink): f.power_w for f in flows}


def test_a_sunny_noon_feeds_house_and_rig_then_charges_then_exports():
    # 20 kW of PV, 1 kW house, 9 kW rig, 4 kW into the battery, 6 kW exported
    flows = as_map(power_flows(20000, 1000, 9000, 4000, -6000))
    assert flows == {("pv", "house"): 1000, ("pv", "rig"): 9000, ("pv", "battery"): 4000,
                     ("pv", "grid"): 6000}


def test_an_evening_shares_battery_and_grid_between_house_and_rig_in_proportion():
    # no PV, 1 kW house and 3 kW rig; the battery gives 2 kW, the grid the other 2 kW
    flows = as_map(power_flows(0, 1000, 3000, -2000, 2000))
    assert flows == {("battery", "house"): 500, ("battery", "rig"): 1500,
                     ("grid", "house"): 500, ("grid", "rig"): 1500}


def test_charging_from_the_grid_and_a_missing_battery():
    assert as_map(power_flows(500, 500, 0, 3000, 3000)) == {("pv", "house"): 500,
                                                            ("grid", "battery"): 3000}
    assert as_map(power_flows(None, 800, 1200, None, 2000)) == {("grid", "house"): 800,
                                                               ("grid", "rig"): 1200}


watts = st.one_of(st.none(), st.floats(-50000, 50000, allow_nan=False))


@given(watts, watts, watts, watts, watts)
def test_flows_never_invent_power_on_any_reading(pv, house, rig, battery, grid):
    flows = power_flows(pv, house, rig, battery, grid)
    out = {"pv": max(0, pv or 0), "battery": max(0, -(battery or 0)), "grid": max(0, grid or 0)}
    into = {"house": max(0, house or 0), "rig": max(0, rig or 0),
            "battery": max(0, battery or 0), "grid": max(0, -(grid or 0))}
    for name, limit in out.items():
        assert sum(f.power_w for f in flows if f.source == name) <= limit + 1
    for name, limit in into.items():
        assert sum(f.power_w for f in flows if f.sink == name) <= limit + 1
    assert all(f.power_w >= 1 and f.source != f.sink for f in flows)
