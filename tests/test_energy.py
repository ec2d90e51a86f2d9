from datetime import UTC, datetime, timedelta

import pytest

from energy.series import SeriesError, load_series
from energy.sim import DEFAULT_HOUSEHOLD, BatterySpec, SimulatedSite
from energy.tariff import DayAheadTariff, FixedTariff, compile_formula
from tests.conftest import data_file

HOUSEHOLD = data_file("household_2024_30min.csv")
PRICES = data_file("nl_day_ahead_2024_2025.csv")
NOON = datetime(2024, 6, 12, 10, 0, tzinfo=UTC)
IMPORT = "(spot + 0.02 + 0.1088) * 1.21"
EXPORT = "spot - 0.01"


def test_site_replays_the_recorded_household_scaled_to_the_array():
    site = SimulatedSite(HOUSEHOLD, pv_scale=6.0)
    s = site.read(NOON)  # recorded: load 1185.7 W, PV 3558.9 W
    assert s.load_w == pytest.approx(1185.7) and s.pv_w == pytest.approx(6 * 3558.9)
    assert s.grid_w == pytest.approx(1185.7 - 6 * 3558.9, abs=0.1)  # exporting
    half = site.read(NOON + timedelta(minutes=15))  # halfway to the 10:30 reading
    assert half.load_w == pytest.approx((1185.7 + 422.3) / 2)
    assert not s.stale


def test_embedded_copy_is_the_shared_data():
    assert SimulatedSite(DEFAULT_HOUSEHOLD).read(NOON) == SimulatedSite(HOUSEHOLD).read(NOON)


def test_replay_maps_any_year_onto_the_record_by_whole_weeks():
    site = SimulatedSite(HOUSEHOLD)
    later = NOON + timedelta(days=364 * 2)
    assert later.weekday() == NOON.weekday()
    assert site.read(later).pv_w == site.read(NOON).pv_w
    no_replay = SimulatedSite(HOUSEHOLD, replay=False).read(later)
    assert no_replay.stale and no_replay.pv_w is None


def test_the_rig_draw_shows_on_the_grid_meter():
    rig_w = [0.0]
    site = SimulatedSite(HOUSEHOLD, rig_power_w=lambda: rig_w[0])
    quiet = site.read(NOON).grid_w
    rig_w[0] = 5000.0
    assert site.read(NOON).grid_w == pytest.approx(quiet + 5000.0)


def test_battery_charges_from_surplus_and_stays_within_bounds():
    site = SimulatedSite(HOUSEHOLD, pv_scale=6.0, battery=BatterySpec(10, 3000, 3000, 10),
                         initial_soc_pct=95.0)
    first = site.read(NOON)
    assert first.battery_w == 3000.0  # surplus ~20 kW, charger limited to 3 kW
    assert first.grid_w == pytest.approx(1185.7 + 3000.0 - 6 * 3558.9, abs=0.2)
    socs = [site.read(NOON + timedelta(minutes=m)).soc_pct for m in range(1, 120)]
    assert socs == sorted(socs) and socs[-1] == pytest.approx(100.0)
    night = datetime(2024, 6, 12, 20, 0, tzinfo=UTC)
    drained = SimulatedSite(HOUSEHOLD, battery=BatterySpec(10, 3000, 3000, 10),
                            initial_soc_pct=95.0, rig_power_w=lambda: 5000.0)
    for m in range(0, 6 * 60, 5):  # 3 kW out of 8.5 usable kWh: empty well before dawn
        s = drained.read(night + timedelta(minutes=m))
    assert s.soc_pct == pytest.approx(10.0, abs=0.01) and s.battery_w == 0.0
    assert s.grid_w == pytest.approx(s.load_w + 5000.0, abs=0.1)  # the grid carries it all


def test_day_ahead_prices_through_the_configured_formulas():
    tariff = DayAheadTariff(PRICES, IMPORT, EXPORT)
    (slot,) = tariff.slots(NOON, NOON + timedelta(minutes=30))  # recorded 36.61 EUR/MWh
    assert slot.start == NOON and slot.end == NOON + timedelta(hours=1)
    assert slot.import_per_kwh == pytest.approx((0.03661 + 0.02 + 0.1088) * 1.21, abs=1e-6)
    assert slot.export_per_kwh == pytest.approx(0.03661 - 0.01, abs=1e-6)
    day = tariff.slots(NOON, NOON + timedelta(hours=48))
    assert len(day) == 48 and all(b.start == a.end for a, b in zip(day, day[1:], strict=False))


def test_negative_prices_are_kept():
    tariff = DayAheadTariff(PRICES, "spot", "spot")
    year = tariff.slots(datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    assert min(s.import_per_kwh for s in year) < 0
    assert len(year) == 366 * 24


def test_prices_beyond_the_record_are_unknown_unless_replayed():
    far = datetime(2027, 3, 1, tzinfo=UTC)
    assert DayAheadTariff(PRICES, IMPORT, EXPORT).slots(far, far + timedelta(hours=4)) == []
    replayed = DayAheadTariff(PRICES, IMPORT, EXPORT, replay=True)
    slots = replayed.slots(far, far + timedelta(hours=4))
    assert [s.start for s in slots] == [far + timedelta(hours=h) for h in range(4)]


def test_fixed_tariff_covers_the_window():
    slots = FixedTariff(0.3, 0.05).slots(NOON + timedelta(minutes=20), NOON + timedelta(hours=3))
    assert slots[0].covers(NOON + timedelta(minutes=20)) and len(slots) == 3


@pytest.mark.parametrize("bad", ["spot ** 2", "__import__('os')", "1 / 0", "spot +", "True",
                                 "price * 2"])
def test_formulas_allow_only_arithmetic_over_spot(bad):
    with pytest.raises(ValueError):
        compile_formula(bad)


def test_malformed_csv_names_file_and_line(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("ts_utc,eur_per_mwh\n2024-01-01T00:00:00Z,1\n2024-01-01T01:00:00Z,abc\n")
    with pytest.raises(SeriesError, match="p.csv, line 3"):
        load_series(str(f), "ts_utc", ["eur_per_mwh"])
    f.write_text("when,eur_per_mwh\n")
    with pytest.raises(SeriesError, match="missing column"):
        load_series(str(f), "ts_utc", ["eur_per_mwh"])
    with pytest.raises(SeriesError, match="no such file"):
        load_series(str(tmp_path / "none.csv"), "ts_utc", [])
