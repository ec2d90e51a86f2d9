"""The rig's energy booked by its real source (pv, battery, grid) and priced at what each cost."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from energy.flows import SOURCES, power_flows, shares_of, supply_of
from energy.types import PriceSlot, SiteSample
from node.books.ledger import RigEnergy, book_energy, day_summary
from node.storage.store import Store, epoch

T0 = datetime(2024, 6, 12, 10, 0, tzinfo=UTC)
NO_OVERHEAD = RigEnergy(host_overhead_w=0.0, cooling_factor=1.0)
IMPORT, FEED_IN = 0.30, 0.05


def prices(store, hours: int = 6):
    store.put_price_slots([PriceSlot(T0 - timedelta(hours=1), T0 + timedelta(hours=hours),
                                     import_per_kwh=IMPORT, export_per_kwh=FEED_IN)])


def run(store, minutes: int, pv_w: float, house_w: float, battery_w: float | None,
        rig_w: float = 1200.0, start: datetime = T0) -> datetime:
    """One GPU drawing `rig_w` for `minutes`, the site reading balanced through the grid."""
    grid_w = house_w + rig_w + (battery_w or 0.0) - pv_w
    for k in range(0 if start == T0 else 1, minutes + 1):  # a later run goes on from the last
        ts = start + timedelta(minutes=k)
        store.add_site_sample(SiteSample(ts, pv_w, house_w, grid_w, battery_w, 50.0))
        store.add_gpu_samples([{"ts": epoch(ts), "gpu_index": 0, "role": "market",
                                "power_w": rig_w, "interval_s": 60.0 if k else None,
                                "interval_energy_wh": rig_w / 60.0 if k else None}])
    return start + timedelta(minutes=minutes)


def by_source(store) -> dict[str, float]:
    rows = store.query("SELECT source, sum(energy_wh) AS wh, sum(cost) AS cost "
                       "FROM energy_bookings GROUP BY source")
    return {r["source"]: (round(r["wh"], 3), round(r["cost"], 6)) for r in rows}


def test_solar_soaked_up_by_the_battery_is_still_solar_for_the_rig(store):
    # noon: 5 kW of PV, the battery takes the surplus, the grid sits at 0 W
    prices(store)
    end = run(store, 30, pv_w=5000.0, house_w=500.0, battery_w=3300.0)
    book_energy(store, end, NO_OVERHEAD)
    assert by_source(store) == {"pv": (600.0, pytest.approx(600 / 1000 * FEED_IN))}


def test_battery_energy_costs_what_charged_it(store):
    prices(store)
    # an hour charging 3 kW from the grid at night, then an hour on the battery alone
    end = run(store, 60, pv_w=0.0, house_w=300.0, battery_w=3000.0)
    book_energy(store, end, NO_OVERHEAD)
    end = run(store, 60, pv_w=0.0, house_w=300.0, battery_w=-1500.0, start=end)
    book_energy(store, end, NO_OVERHEAD)
    books = by_source(store)
    assert books["grid"] == (1200.0, pytest.approx(1.2 * IMPORT))
    assert books["battery"][0] == pytest.approx(1200.0)  # its share: 1200 of the 1500 W
    assert books["battery"][1] == pytest.approx(books["battery"][0] / 1000 * IMPORT)


def test_battery_charged_half_by_solar_half_by_grid_costs_the_average(store):
    prices(store)
    end = run(store, 60, pv_w=0.0, house_w=0.0, battery_w=2000.0, rig_w=0.001)
    end = run(store, 60, pv_w=2000.0, house_w=0.0, battery_w=2000.0, rig_w=0.001, start=end)
    book_energy(store, end, NO_OVERHEAD)
    stored_wh, cost = store.battery_account()
    assert stored_wh == pytest.approx(4000.0, rel=1e-3)
    assert cost / stored_wh * 1000 == pytest.approx((IMPORT + FEED_IN) / 2, rel=1e-3)
    end = run(store, 30, pv_w=0.0, house_w=0.0, battery_w=-1200.0, start=end)
    before = store.query("SELECT sum(cost) AS c FROM energy_bookings WHERE source = 'battery'")
    book_energy(store, end, NO_OVERHEAD)
    wh, cost = by_source(store)["battery"]
    assert wh == pytest.approx(600.0) and not before[0]["c"]
    assert cost == pytest.approx(0.6 * (IMPORT + FEED_IN) / 2, rel=1e-3)
    assert store.battery_account()[0] == pytest.approx(4000.0 - 600.0, rel=1e-3)


def test_battery_energy_seen_leaving_before_any_charge_is_priced_as_solar(store):
    prices(store)
    end = run(store, 30, pv_w=0.0, house_w=0.0, battery_w=-1200.0)
    book_energy(store, end, NO_OVERHEAD)
    assert by_source(store) == {"battery": (600.0, pytest.approx(0.6 * FEED_IN))}


def test_booking_twice_moves_the_battery_account_once(store):
    prices(store)
    end = run(store, 60, pv_w=0.0, house_w=300.0, battery_w=3000.0)
    book_energy(store, end, NO_OVERHEAD)
    account = store.battery_account()
    assert book_energy(store, end, NO_OVERHEAD) == 0
    assert store.battery_account() == account


def test_a_store_of_the_previous_version_keeps_its_old_sources(tmp_path):
    path = tmp_path / "old.db"
    s = Store(path, "UTC")
    s.db.execute("DROP TABLE battery_account")
    s.db.execute("DELETE FROM _sqlite_migrations WHERE name = '002_battery_account'")
    s.db.execute("INSERT INTO energy_bookings VALUES "
                 "(0, '1970-01-01', 'market', 'grid', 500, 0.15)")
    s.db.conn.commit()
    s.close()
    s = Store(path, "UTC")  # migrates
    prices(s)
    end = run(s, 30, pv_w=0.0, house_w=0.0, battery_w=-1200.0)
    book_energy(s, end, NO_OVERHEAD)
    old = s.query("SELECT source, energy_wh FROM energy_bookings WHERE bucket = 0")
    assert old == [{"source": "grid", "energy_wh": 500.0}]
    assert "battery" in by_source(s)
    s.close()


def test_history_shows_the_battery_as_a_source(store):
    prices(store)
    end = run(store, 30, pv_w=0.0, house_w=0.0, battery_w=-1200.0)
    book_energy(store, end, NO_OVERHEAD)
    rows = store.daily(store.local_day(T0))
    assert {r["source"] for r in rows if r["category"] == "energy"} == {"battery"}
    assert day_summary(store, store.local_day(T0)).energy_wh == pytest.approx(600.0)


# --- properties -----------------------------------------------------------------------------
watts = st.floats(0, 40000, allow_nan=False)
signed = st.floats(-20000, 20000, allow_nan=False)
meter_error = st.floats(-5, 5, allow_nan=False)


@given(pv=watts, house=watts, rig=watts, battery=signed, error=meter_error)
@example(pv=5e-324, house=0.0, rig=2.0, battery=0.0, error=0.0)  # a denormal's share is 0
def test_the_rigs_sources_sum_to_its_draw_and_none_gives_more_than_it_had(
        pv, house, rig, battery, error):
    grid = house + rig + battery - pv + error  # the grid balances the site, a few watts off
    shares = shares_of("rig", pv, house, rig, battery, grid)
    assert set(shares) <= set(SOURCES) and all(x > 0 for x in shares.values())
    assert sum(shares.values()) == pytest.approx(1.0)
    had = {"pv": pv, "battery": max(0.0, -battery), "grid": max(0.0, grid)}
    for source, share in shares.items():  # only the meters' error is ever new
        assert share * rig <= had[source] + abs(error) + 1e-6


@given(st.tuples(*[st.one_of(st.none(), st.floats(-50000, 50000, allow_nan=False))] * 5))
def test_the_rigs_supply_on_any_reading_is_what_the_diagram_draws(reading):
    supply = supply_of("rig", *reading)
    drawn = {f.source: f.power_w for f in power_flows(*reading) if f.sink == "rig"}
    for source in SOURCES:
        assert supply[source] == pytest.approx(drawn.get(source, 0.0), abs=1.0)
    assert sum(supply.values()) <= max(0.0, reading[2] or 0.0) + 1e-6


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(watts, watts, st.floats(0, 8000, allow_nan=False), signed,
                          meter_error), min_size=1, max_size=6))
def test_the_books_split_every_wh_of_the_rig_and_invent_none(tmp_path_factory, steps):
    store = Store(tmp_path_factory.mktemp("p") / "s.db", "UTC")
    prices(store, hours=12)
    expected_wh, had = 0.0, {"pv": 0.0, "battery": 0.0, "grid": 0.0}
    for k, (pv, house, rig, battery, error) in enumerate(steps):
        ts = T0 + timedelta(minutes=10 * k)
        grid = house + rig + battery - pv + error
        store.add_site_sample(SiteSample(ts, pv, house, grid, battery, None))
        store.add_gpu_samples([{"ts": epoch(ts) + 1, "gpu_index": 0, "role": "market",
                                "interval_s": 600.0, "interval_energy_wh": rig / 6}])
        expected_wh += rig / 6
        had["pv"] += pv / 6
        had["battery"] += max(0.0, -battery) / 6
        had["grid"] += (max(0.0, grid) + abs(error)) / 6
        had["pv"] += abs(error) / 6
        had["battery"] += abs(error) / 6
    book_energy(store, T0 + timedelta(hours=2), NO_OVERHEAD)
    booked = {r["source"]: r["wh"] for r in store.query(
        "SELECT source, sum(energy_wh) AS wh FROM energy_bookings GROUP BY source")}
    assert sum(booked.values()) == pytest.approx(expected_wh, abs=1e-6)
    for source, limit in had.items():
        assert booked.get(source, 0.0) <= limit + 1e-6
    store.close()


# --- the demo agent: the books agree with the flow diagram ----------------------------------
def test_the_demos_books_match_what_the_flow_diagram_showed_over_the_day(tmp_path):
    from node.status import agent_status
    from tests.conftest import make_agent

    # a June afternoon into the night: solar, then the battery, then the grid
    agent, clock = make_agent(tmp_path, start=datetime(2024, 6, 12, 12, 0, tzinfo=UTC))
    shown_wh = dict.fromkeys(SOURCES, 0.0)
    last: dict[str, float] = {}
    step_s, elapsed = 60.0, 0.0
    while elapsed < 9 * 3600:
        for name, (_, interval_s) in agent.jobs.items():
            if elapsed - last.get(name, -1e18) >= interval_s:
                agent.run_job(name)
                last[name] = elapsed
        for flow in agent_status(agent)["site"]["flows"]:
            if flow["to"] == "rig":
                shown_wh[flow["from"]] += flow["power_w"] * step_s / 3600.0
        clock.advance(step_s)
        elapsed += step_s
    agent.run_job("ledger")
    booked = by_source(agent.store)
    agent.store.close()
    assert set(booked) == set(SOURCES), booked  # the day had all three
    for source in SOURCES:
        assert booked[source][0] == pytest.approx(shown_wh[source], rel=0.05, abs=50.0)


def test_status_and_metrics_show_todays_rig_energy_by_source(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from node.status import agent_status
    from tests.conftest import make_agent, run_for
    from webui.app import create_app

    agent, clock = make_agent(tmp_path, start=datetime(2024, 6, 12, 10, 0, tzinfo=UTC))
    run_for(agent, clock, hours=1)
    agent.run_job("ledger")
    today = agent_status(agent)["today"]
    assert today["energy_kwh_by_source"]["pv"] > 0
    assert sum(today["energy_kwh_by_source"].values()) == pytest.approx(today["energy_kwh"],
                                                                        abs=0.01)
    assert 0 < today["solar_share_pct"] <= 100
    text = create_app(lambda: agent_status(agent)).test_client().get("/metrics").get_data(
        as_text=True)
    agent.store.close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("sunrig_rig_energy_today_kwh", (("source", "pv"),))] == pytest.approx(
        today["energy_kwh_by_source"]["pv"])
