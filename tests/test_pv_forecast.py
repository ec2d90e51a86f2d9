"""pvlib's clear sky on the array's plane, scaled by how the real household's array did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from energy.pv_forecast import Array, PvForecast, clear_sky_w, weather_ratio
from energy.sim import SimulatedSite

# the shared household's array: 5 kWp near Utrecht
ARRAY = Array(52.09, 5.12, 5.0, tilt_deg=35, azimuth_deg=180)


def test_clear_sky_is_zero_at_night_and_peaks_near_noon_in_june():
    day = datetime(2024, 6, 21, tzinfo=UTC)
    times = [day + timedelta(minutes=15 * k) for k in range(96)]
    watts = clear_sky_w(ARRAY, times)
    assert watts[0] == 0.0 and watts[95] == 0.0  # midnight UTC
    peak = max(range(96), key=watts.__getitem__)
    assert 10 * 4 <= peak <= 13 * 4  # solar noon near 11:40 UTC
    assert 3000 < watts[peak] < 5000  # a 5 kWp array, derated, on a clear June day
    winter = clear_sky_w(ARRAY, [datetime(2024, 12, 21, 11, 30, tzinfo=UTC)])[0]
    assert winter < watts[peak]


def test_the_weather_ratio_from_the_real_trace_corrects_the_forecast():
    site = SimulatedSite()  # the shared household, 5 kWp as recorded
    start = datetime(2024, 6, 10, tzinfo=UTC)
    past = [(start + timedelta(minutes=15 * k), site.read(start + timedelta(minutes=15 * k)).pv_w)
            for k in range(3 * 96)]
    ratio = weather_ratio(ARRAY, past)
    assert ratio is not None and 0.2 < ratio <= 1.2
    forecast = PvForecast(ARRAY, ratio, start + timedelta(days=3), hours=24)
    noon = forecast.at(start + timedelta(days=3, hours=11, minutes=30))
    clear = clear_sky_w(ARRAY, [start + timedelta(days=3, hours=11, minutes=30)])[0]
    assert noon == pytest.approx(clear * ratio)
    assert forecast.at(start + timedelta(days=5)) is None  # beyond what was forecast
    # what the trace did over the next day is of the order the forecast says
    actual = sum(site.read(start + timedelta(days=3, minutes=15 * k)).pv_w for k in range(96))
    predicted = sum(forecast.at(start + timedelta(days=3, minutes=15 * k)) for k in range(96))
    assert 0.3 < predicted / actual < 3.0


def test_no_daylight_gives_no_ratio():
    night = datetime(2024, 12, 21, 0, tzinfo=UTC)
    dark = [(night + timedelta(minutes=15 * k), 0.0) for k in range(8)]
    assert weather_ratio(ARRAY, dark) is None


def test_the_clear_sky_is_computed_once_per_day_and_array_and_read_off_it_closely():
    import pandas as pd
    from pvlib import irradiance, location

    from energy.pv_forecast import _clear_sky_w, _day_curve
    _day_curve.cache_clear()
    start = datetime(2024, 3, 20, 6, 7, tzinfo=UTC)
    for _ in range(3):  # three plans over the same two days and a half
        PvForecast(ARRAY, 0.7, start, hours=60)
    assert _day_curve.cache_info().misses == 3
    other = Array(40.0, -3.7, 8.0)
    clear_sky_w(other, [start])
    assert _day_curve.cache_info().misses == 4  # another array is another curve
    assert _day_curve.cache_info().maxsize is not None  # bounded
    # read off the curve, the clear sky at any minute is pvlib's own to a few watts
    times = [start + timedelta(minutes=17 * k) for k in range(80)]
    exact = _clear_sky_w(ARRAY, times, pd, irradiance, location)
    for got, want in zip(clear_sky_w(ARRAY, times), exact, strict=True):
        assert abs(got - want) <= max(15.0, 0.01 * want)


def test_the_measured_ratio_is_one_rule_for_the_clear_sky_and_a_service():
    from energy.pv_forecast import RATIO_BOUNDS, measured_ratio
    noon = datetime(2024, 6, 21, 11, 30, tzinfo=UTC)
    times = [noon + timedelta(minutes=15 * k) for k in range(4)]
    clear = clear_sky_w(ARRAY, times)
    measured = [(t, 0.5 * c) for t, c in zip(times, clear, strict=True)]
    assert weather_ratio(ARRAY, measured) == pytest.approx(0.5)
    assert weather_ratio(ARRAY, measured) == pytest.approx(
        measured_ratio([(w, c) for (_, w), c in zip(measured, clear, strict=True)], RATIO_BOUNDS))
    # dawn's few watts, missing values and a forecast without a value are left out
    assert measured_ratio([(40.0, 20.0), (None, 800.0), (300.0, None), (400.0, 1000.0)],
                          (0.0, 2.0)) == pytest.approx(0.4)
    assert measured_ratio([(3000.0, 1000.0)], (0.0, 2.0)) == 2.0  # bounded
    assert measured_ratio([(10.0, 10.0)], (0.0, 2.0)) is None  # no daylight in the forecast


def test_a_service_value_is_used_where_there_is_one_and_the_clear_sky_elsewhere():
    start = datetime(2024, 6, 21, 9, 0, tzinfo=UTC)
    said = {start + timedelta(minutes=7, seconds=30): 1000.0}  # the first slot's middle
    forecast = PvForecast(ARRAY, 0.6, start, hours=1, service=said.get, service_ratio=0.9)
    clear = clear_sky_w(ARRAY, [start + timedelta(minutes=15 * k) for k in range(4)])
    assert forecast.service_slots == 1
    assert forecast.at(start) == pytest.approx(900.0)
    for k in range(1, 4):
        assert forecast.at(start + timedelta(minutes=15 * k)) == pytest.approx(clear[k] * 0.6)
