"""What the live agent feeds the planner: forecasts from history, learned lease length and fill,
re-planning on new prices, and no GPUs for a market that cannot be read."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from energy.forecast import ProfileForecast
from energy.types import PriceSlot
from market_adapter.base import MarketError
from node.planning.inputs import FillTracker, learned_terms
from node.planning.planner import MarketTerms
from node.storage.store import epoch
from tests.conftest import make_agent, run_for

AMS = ZoneInfo("Europe/Amsterdam")
MONDAY = datetime(2024, 6, 10, tzinfo=AMS)


def test_profile_forecast_keeps_weekdays_and_weekends_apart():
    rows = []
    for day in range(7):  # a week: 1000 W at 12:00 on weekdays, 3000 W at weekends
        ts = MONDAY + timedelta(days=day, hours=12)
        rows.append((ts.timestamp(), 3000.0 if day >= 5 else 1000.0))
    rows.append(((MONDAY + timedelta(hours=13)).timestamp(), None))  # missing, not zero
    f = ProfileForecast.from_rows(rows, AMS)
    assert f.at(MONDAY + timedelta(days=8, hours=12, minutes=5)) == 1000.0  # next Tuesday
    assert f.at(MONDAY + timedelta(days=12, hours=12)) == 3000.0  # next Saturday
    assert f.at(MONDAY + timedelta(days=7, hours=13)) is None
    only_weekdays = ProfileForecast.from_rows(rows[:5], AMS)
    assert only_weekdays.at(MONDAY + timedelta(days=12, hours=12)) == 1000.0


def test_lease_length_is_learned_once_enough_leases_closed(store):
    now = datetime(2024, 6, 20, tzinfo=UTC)
    terms = {"sim": MarketTerms(2.1, 1.8, mean_lease_hours=8.0)}
    rows = [{"market": "sim", "lease_id": f"l{i}", "gpus": 1, "price_per_gpu_hour": 2.0,
             "state": "closed", "started": epoch(now - timedelta(hours=10 + i)),
             "ended": epoch(now - timedelta(hours=i))} for i in range(9)]
    store.upsert_leases(rows)
    assert learned_terms(store, terms, now, FillTracker())["sim"].mean_lease_hours == 8.0
    store.upsert_leases([{**rows[0], "lease_id": "l9"}])
    assert learned_terms(store, terms, now, FillTracker())["sim"].mean_lease_hours == 10.0


def test_a_market_that_fills_less_than_modelled_is_planned_quieter():
    terms = MarketTerms(2.1, 1.8, orders_per_hour=4.0, mean_lease_hours=8.0)
    tracker = FillTracker()
    t0 = datetime(2024, 6, 20, tzinfo=UTC)
    # the model expects GPUs leased every hour; the market gives none. The configured demand
    # is weighed as the evidence lumpy orders need, so the factor falls over weeks, not hours
    for k in range(8 * 7 * 24):
        tracker.offered("sim", t0 + timedelta(hours=k), 2.3, 7)
        tracker.synced("sim", t0 + timedelta(hours=k + 1), terms, 0)
        if k + 1 == 400:
            assert tracker.factor("sim") < 0.5
    assert tracker.factor("sim") < 0.15


def test_new_prices_bring_a_new_plan_at_once(tmp_path):
    agent, clock = make_agent(tmp_path)
    run_for(agent, clock, hours=0.5)
    first = agent.state.plan
    tariff = agent.parts.tariff

    class Dearer:  # tomorrow's prices published: every slot now costs a euro more
        def slots(self, start, end):
            return [PriceSlot(s.start, s.end, s.import_per_kwh + 1.0, s.export_per_kwh)
                    for s in tariff.slots(start, end)]
    agent.parts.tariff = Dearer()
    agent.run_job("prices")
    assert agent.state.plan is not first
    # an imported GPU-hour now costs about 0.9 more: the floor passes part of it on to tenants
    # (less where the forecast sun would cover the lease)
    before = first.slots[0].floor_per_gpu_hour["sim"]
    assert agent.state.plan.slots[0].floor_per_gpu_hour["sim"] > before + 0.03
    agent.store.close()


def test_a_market_that_cannot_be_read_gets_no_new_gpus(tmp_path):
    agent, clock = make_agent(tmp_path, orders_per_hour=6.0)
    offers = []

    class Down:
        name, currency_rate = "down", 1.0

        def offer(self, capacity, floor):
            offers.append(capacity.gpus)

        def leases(self):
            raise MarketError("down: connection refused")

    agent.parts.markets = {"down": Down(), **agent.parts.markets}
    agent.parts.terms = {"down": replace(agent.parts.terms["sim"], expected_price_per_gpu_hour=9.0),
                         **agent.parts.terms}
    run_for(agent, clock, hours=1)
    assert "down" in agent.state.markets_down
    assert "down" not in agent.state.plan.slots[0].offered
    assert offers and set(offers[-5:]) == {0}
    agent.store.close()


def test_the_pv_forecast_follows_the_sun_and_the_weeks_weather(tmp_path):
    agent, clock = make_agent(tmp_path)
    day = clock.now().replace(hour=0, minute=0) + timedelta(days=1)
    night, noon = day + timedelta(hours=1), day + timedelta(hours=11, minutes=30)
    typical = agent._plan_inputs(clock.now()).pv_w_at(noon)  # no daylight measured yet
    run_for(agent, clock, hours=8, jobs=("sample_site",))  # a morning for the weather ratio
    inputs = agent._plan_inputs(clock.now())
    assert inputs.pv_w_at(night) == 0.0
    assert inputs.pv_w_at(noon) > 3000  # 30 kWp in June, under the trace's weather
    assert inputs.pv_w_at(noon) != pytest.approx(typical, rel=0.01)  # the sky it measured
    agent.store.close()


def test_prices_beyond_the_published_day_are_forecast_from_the_week(tmp_path):
    from energy.price_forecast import extend
    tz = AMS
    day = datetime(2024, 6, 10, tzinfo=tz)
    history = [PriceSlot(day + timedelta(hours=h), day + timedelta(hours=h + 1),
                         0.40 if (day + timedelta(hours=h)).hour == 19 else 0.20, 0.05)
               for h in range(24 * 7)]
    known = history[-24:]
    out = extend(known, history[:-24], known[-1].end + timedelta(hours=24), tz)
    assert len(out) == 48 and out[:24] == known
    evening = [s for s in out[24:] if s.start.astimezone(tz).hour == 19]
    assert [s.import_per_kwh for s in evening] == [0.40]  # the evening peak carries over
    assert extend([], history, day, tz) == []


def test_the_plan_spans_its_horizon_when_only_tomorrow_is_published(tmp_path):
    agent, clock = make_agent(tmp_path)
    tariff = agent.parts.tariff

    class UntilTomorrowMidnight:  # what a day-ahead market has published in the morning
        def slots(self, start, end):
            local = clock.now().astimezone(AMS)
            midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(),
                                        AMS)
            return [s for s in tariff.slots(start, end) if s.start < midnight]
    agent.parts.tariff = UntilTomorrowMidnight()
    run_for(agent, clock, hours=0.5)
    plan = agent.state.plan
    assert plan.slots[-1].end - plan.slots[0].start >= timedelta(hours=47)
    agent.store.close()
